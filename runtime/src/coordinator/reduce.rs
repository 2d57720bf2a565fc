//! From a callback's module answers to its reply: one implementation per (answer type, reply
//! type) pair of the bus schema's table, each reading the callback's row of the rules table
//! where the same types serve several callbacks. The dispatcher calls
//! `<Reply as Reduce<Answer>>::reduce` for every callback; nothing here names a callback.

use super::lifetime::Lifetime;
use super::plan::{Plan, PlanEntry};
use super::reducers::{
    chain, failure, first_deny, first_non_none, ordered_walk, policy_deny, run_all, single_slot,
    union, Answered, DispatchCtx, Step, Verdict, Walk,
};
use crate::policy::FailurePolicy;
use crate::rules::{Deny, Reading, Reducer, Rules};
use crate::telemetry::Outcome as Judged;
use glia_bus_schema::{
    AllUsers, AuthAnswer, AuthReply, CallbackArgs, CallbackRequest, CheckAnswer,
    CheckEventAllowedAnswer, Decision, ExpiryAnswer, ExpiryReply, Ignored, InterestedUsers,
    InterestedUsersReply, InvocationError, JsonObject, MediaUploadLimit, NameAnswer, NameReply,
    OnCreateRoomAnswer, Outcome, RatelimitOverride, RegistrationBehaviour, RegistrationReply,
    RoomContent, SlotReply, SpamAnswer, TruthyAnswer, UnsignedReply, UserPresenceState,
    UsersForStatesAnswer, UsersForStatesReply, ValueReply,
};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;

/// How the answers of one callback's modules become its reply.
pub trait Reduce<A>: Sized {
    /// The (reducer, reading) rows this pair can serve; a test holds the table to them.
    const SERVES: &'static [(Reducer, Reading)];

    /// Walks `plan` for `request` under `rules` and makes the reply.
    fn reduce<R: CallbackArgs<Answer = A, Reply = Self>>(
        ctx: &DispatchCtx<'_>,
        rules: &'static Rules,
        plan: &Plan,
        request: Arc<CallbackRequest>,
    ) -> impl Future<Output = Self>;
}

fn deny_decision(deny: Deny, module: &str) -> Decision {
    Decision::Deny {
        errcode: deny.errcode,
        error: deny.message,
        fields: deny.fields,
        module: module.to_owned(),
        status: None,
        module_message: deny.module_message,
    }
}

fn decision(walk: Walk<Deny>) -> Decision {
    match walk {
        Walk::Stopped(deny, module) => deny_decision(deny, &module),
        Walk::Exhausted => Decision::ALLOW,
        Walk::Failed(f) => Decision::Error(f),
    }
}

/// A FirstDeny over answers that either deny or carry on.
async fn yes_no<R: CallbackArgs>(
    ctx: &DispatchCtx<'_>,
    rules: &'static Rules,
    plan: &Plan,
    request: Arc<CallbackRequest>,
    read: impl Fn(R::Answer) -> Option<Deny>,
) -> Decision {
    let callback = rules.callback;
    decision(
        first_deny::<R, Deny>(
            ctx,
            plan,
            request,
            |answer, _| read(answer).map_or(Step::Continue, Step::Stop),
            |error, _| Step::Stop(policy_deny(callback, error)),
        )
        .await,
    )
}

/// Reads a spam-checker answer as spec §3.1's normalisation table does for `rules`' reading:
/// allow (`None`) or the deny Synapse raises. `NOT_SPAM` is compared by equality, the spec's
/// advice for a port (Python's identity test only works for interned strings).
pub fn spam_verdict(rules: &Rules, answer: &SpamAnswer) -> Option<Deny> {
    use Reading::*;
    let callback = rules.callback;
    let invalid = |what: &dyn std::fmt::Debug| {
        tracing::warn!(%callback, answer = ?what, "module returned an invalid value; denying as Synapse does");
        Some(Deny::default_for(callback))
    };
    match (rules.reading, answer) {
        (_, SpamAnswer::NotSpam(_)) => None,
        (EventSpam | MediaSpam, SpamAnswer::Bool(false)) => None,
        (EventSpam | MediaSpam, SpamAnswer::Bool(true)) => Some(Deny::default_for(callback)),
        (EventSpam | UserMay | LoginSpam, SpamAnswer::Code(code)) => Some(Deny::with_code(
            callback,
            &code.errcode,
            code.fields.as_ref(),
        )),
        // The deprecated plain string: Synapse compares it with NOT_SPAM by equality, else
        // shows it to the client as the message of an M_FORBIDDEN.
        (EventSpam, SpamAnswer::Message(m)) if m.message == "NOT_SPAM" => None,
        (EventSpam, SpamAnswer::Message(m)) => Some(Deny::with_message(&m.message)),
        (EventSpam, SpamAnswer::Other(serde_json::Value::String(s))) => Some(Deny::with_message(s)),
        // The media caller ignores the extra fields.
        (MediaSpam, SpamAnswer::Code(code)) => Some(Deny::with_code(callback, &code.errcode, None)),
        // user_may_send_state_event: only a bare errcode counts; a tuple denies as M_FORBIDDEN.
        (StateEventSpam, SpamAnswer::Code(code)) if code.fields.is_none() => {
            Some(Deny::with_code(callback, &code.errcode, None))
        }
        (UserMay, SpamAnswer::Bool(true)) => None,
        (UserMay, SpamAnswer::Bool(false)) => Some(Deny::default_for(callback)),
        (_, other) => invalid(other),
    }
}

impl Reduce<SpamAnswer> for Decision {
    const SERVES: &'static [(Reducer, Reading)] = &[
        (Reducer::FirstDeny, Reading::EventSpam),
        (Reducer::FirstDeny, Reading::UserMay),
        (Reducer::FirstDeny, Reading::MediaSpam),
        (Reducer::FirstDeny, Reading::StateEventSpam),
        (Reducer::FirstDeny, Reading::LoginSpam),
    ];

    async fn reduce<R: CallbackArgs<Answer = SpamAnswer, Reply = Self>>(
        ctx: &DispatchCtx<'_>,
        rules: &'static Rules,
        plan: &Plan,
        request: Arc<CallbackRequest>,
    ) -> Self {
        yes_no::<R>(ctx, rules, plan, request, |a| spam_verdict(rules, &a)).await
    }
}

impl Reduce<TruthyAnswer> for Decision {
    const SERVES: &'static [(Reducer, Reading)] = &[
        (Reducer::FirstDeny, Reading::TruthyDenies),
        (Reducer::FirstDeny, Reading::FalsyDenies),
    ];

    async fn reduce<R: CallbackArgs<Answer = TruthyAnswer, Reply = Self>>(
        ctx: &DispatchCtx<'_>,
        rules: &'static Rules,
        plan: &Plan,
        request: Arc<CallbackRequest>,
    ) -> Self {
        let deny_when_truthy = rules.reading == Reading::TruthyDenies;
        yes_no::<R>(ctx, rules, plan, request, |a| {
            (a.is_truthy() == deny_when_truthy).then(|| Deny::default_for(rules.callback))
        })
        .await
    }
}

impl Reduce<CheckAnswer> for Decision {
    const SERVES: &'static [(Reducer, Reading)] = &[(Reducer::FirstDeny, Reading::FalseDenies)];

    async fn reduce<R: CallbackArgs<Answer = CheckAnswer, Reply = Self>>(
        ctx: &DispatchCtx<'_>,
        rules: &'static Rules,
        plan: &Plan,
        request: Arc<CallbackRequest>,
    ) -> Self {
        yes_no::<R>(ctx, rules, plan, request, |a| {
            a.is_false().then(|| Deny::default_for(rules.callback))
        })
        .await
    }
}

/// `check_event_allowed`'s deciding answers.
enum EventVerdict {
    Deny(Deny),
    Replace(JsonObject),
}

impl Verdict for EventVerdict {
    fn verdict(&self) -> (Judged, Option<&str>) {
        match self {
            EventVerdict::Deny(d) => d.verdict(),
            EventVerdict::Replace(_) => (Judged::Answer, None),
        }
    }
}

impl Reduce<CheckEventAllowedAnswer> for Decision {
    const SERVES: &'static [(Reducer, Reading)] = &[(Reducer::FirstDeny, Reading::EventAllowed)];

    async fn reduce<R: CallbackArgs<Answer = CheckEventAllowedAnswer, Reply = Self>>(
        ctx: &DispatchCtx<'_>,
        rules: &'static Rules,
        plan: &Plan,
        request: Arc<CallbackRequest>,
    ) -> Self {
        let callback = rules.callback;
        let walk = first_deny::<R, EventVerdict>(
            ctx,
            plan,
            request,
            |answer, _| match answer {
                a if a.allowed == Some(false) => {
                    Step::Stop(EventVerdict::Deny(Deny::default_for(callback)))
                }
                CheckEventAllowedAnswer {
                    replacement: Some(event),
                    ..
                } => Step::Stop(EventVerdict::Replace(event)),
                _ => Step::Continue,
            },
            |error, _| Step::Stop(EventVerdict::Deny(policy_deny(callback, error))),
        )
        .await;
        match walk {
            Walk::Stopped(EventVerdict::Deny(d), module) => deny_decision(d, &module),
            Walk::Stopped(EventVerdict::Replace(event), module) => Decision::Allow {
                replacement: Some(event),
                request_content: None,
                module: Some(module.to_string()),
            },
            Walk::Exhausted => Decision::ALLOW,
            Walk::Failed(f) => Decision::Error(f),
        }
    }
}

impl Reduce<OnCreateRoomAnswer> for Decision {
    const SERVES: &'static [(Reducer, Reading)] = &[(Reducer::Chain, Reading::RoomEdits)];

    async fn reduce<R: CallbackArgs<Answer = OnCreateRoomAnswer, Reply = Self>>(
        ctx: &DispatchCtx<'_>,
        rules: &'static Rules,
        plan: &Plan,
        request: Arc<CallbackRequest>,
    ) -> Self {
        let callback = rules.callback;
        let refused = |deny: Deny, status: Option<u16>, entry: &PlanEntry| Decision::Deny {
            errcode: deny.errcode,
            error: deny.message,
            fields: deny.fields,
            module: entry.name.to_string(),
            status,
            module_message: deny.module_message,
        };
        let result = chain::<R, Decision>(
            ctx,
            plan,
            request,
            |answer, entry, current| match answer {
                OnCreateRoomAnswer::Deny { deny } => Err(refused(
                    Deny {
                        errcode: deny.errcode,
                        message: deny.error,
                        fields: deny.fields,
                        module_message: false,
                    },
                    Some(deny.status),
                    entry,
                )),
                OnCreateRoomAnswer::Continue(RoomContent {
                    request_content: Some(content),
                }) => {
                    let CallbackRequest::OnCreateRoom(args) = current.as_ref() else {
                        unreachable!("the chain carries on_create_room requests")
                    };
                    Ok(Arc::new(CallbackRequest::OnCreateRoom(
                        glia_bus_schema::requests::OnCreateRoom {
                            requester: args.requester.clone(),
                            request_content: content,
                            is_requester_admin: args.is_requester_admin,
                        },
                    )))
                }
                // Synapse ignores the return value of a module registered with
                // register_third_party_rules_callbacks (spec §9): only raising refuses.
                OnCreateRoomAnswer::Continue(RoomContent {
                    request_content: None,
                })
                | OnCreateRoomAnswer::Bool(_)
                | OnCreateRoomAnswer::Unchanged => Ok(current.clone()),
            },
            |error, entry| match entry.policy {
                FailurePolicy::Allow => None,
                FailurePolicy::Deny => Some(match error {
                    InvocationError::Failed {
                        synapse_error: Some(e),
                        ..
                    } => refused(policy_deny(callback, error), Some(e.status), entry),
                    _ => refused(Deny::default_for(callback), None, entry),
                }),
                FailurePolicy::Error => Some(Decision::Error(failure(callback, entry, error))),
            },
        )
        .await;
        match result {
            Ok(request) => match Arc::unwrap_or_clone(request) {
                CallbackRequest::OnCreateRoom(args) => Decision::Allow {
                    replacement: None,
                    request_content: Some(args.request_content),
                    module: None,
                },
                _ => unreachable!("the chain carries on_create_room requests"),
            },
            Err(decision) => decision,
        }
    }
}

impl Reduce<Ignored> for Decision {
    const SERVES: &'static [(Reducer, Reading)] = &[
        (Reducer::RunAll, Reading::Ignored),
        (Reducer::SingleSlot, Reading::Ignored),
    ];

    async fn reduce<R: CallbackArgs<Answer = Ignored, Reply = Self>>(
        ctx: &DispatchCtx<'_>,
        _: &'static Rules,
        plan: &Plan,
        request: Arc<CallbackRequest>,
    ) -> Self {
        if plan.entries.is_empty() {
            return Decision::ALLOW;
        }
        match run_all::<R>(ctx, plan, request).await {
            Ok(()) => Decision::ALLOW,
            Err(f) => Decision::Error(f),
        }
    }
}

impl Reduce<RegistrationBehaviour> for Outcome<RegistrationReply> {
    const SERVES: &'static [(Reducer, Reading)] = &[(Reducer::FirstDeny, Reading::Behaviour)];

    async fn reduce<R: CallbackArgs<Answer = RegistrationBehaviour, Reply = Self>>(
        ctx: &DispatchCtx<'_>,
        _: &'static Rules,
        plan: &Plan,
        request: Arc<CallbackRequest>,
    ) -> Self {
        let walk = first_deny::<R, RegistrationBehaviour>(
            ctx,
            plan,
            request,
            |b, _| {
                if b == RegistrationBehaviour::Allow {
                    Step::Continue
                } else {
                    Step::Stop(b)
                }
            },
            |_, _| Step::Stop(RegistrationBehaviour::Deny),
        )
        .await;
        match walk {
            Walk::Stopped(behaviour, module) => Outcome::Value(RegistrationReply {
                behaviour,
                module: Some(module.to_string()),
            }),
            Walk::Exhausted => Outcome::Value(RegistrationReply {
                behaviour: RegistrationBehaviour::Allow,
                module: None,
            }),
            Walk::Failed(f) => f.into(),
        }
    }
}

/// A FirstNonNone: the first value `select` finds in plan order and the module that gave
/// it, made into the reply by `reply` (both `None` when no module gave one); a failure under
/// `deny` has nothing to deny, so it fails the request.
async fn first_value<R: CallbackArgs, T, V>(
    ctx: &DispatchCtx<'_>,
    plan: &Plan,
    request: Arc<CallbackRequest>,
    select: impl FnMut(R::Answer, &PlanEntry) -> Option<T>,
    reply: impl FnOnce(Option<T>, Option<String>) -> V,
) -> Outcome<V> {
    match first_non_none::<R, T>(ctx, plan, request, select, |_, _| None).await {
        Walk::Stopped(value, module) => {
            Outcome::Value(reply(Some(value), Some(module.to_string())))
        }
        Walk::Exhausted => Outcome::Value(reply(None, None)),
        Walk::Failed(f) => f.into(),
    }
}

impl Reduce<ExpiryAnswer> for Outcome<ExpiryReply> {
    const SERVES: &'static [(Reducer, Reading)] = &[(Reducer::FirstNonNone, Reading::NotNone)];

    async fn reduce<R: CallbackArgs<Answer = ExpiryAnswer, Reply = Self>>(
        ctx: &DispatchCtx<'_>,
        _: &'static Rules,
        plan: &Plan,
        request: Arc<CallbackRequest>,
    ) -> Self {
        let mut lifetime = Lifetime::default();
        let position = |entry: &PlanEntry| plan.entries.iter().position(|e| std::ptr::eq(e, entry));
        let walk = first_non_none::<R, _>(
            ctx,
            plan,
            request,
            |answer: ExpiryAnswer, entry| {
                lifetime.answered(position(entry), answer.valid_until_ms());
                answer.expired()
            },
            |_, _| None,
        )
        .await;
        match walk {
            Walk::Stopped(expired, module) => {
                let consulted = plan
                    .entries
                    .iter()
                    .position(|e| e.name == module)
                    .map_or(0, |i| i + 1);
                Outcome::Value(ExpiryReply::lasting(
                    Some(expired),
                    Some(module.to_string()),
                    lifetime.holds_until(consulted),
                    ctx.generation,
                ))
            }
            Walk::Exhausted => Outcome::Value(ExpiryReply::lasting(
                None,
                None,
                lifetime.holds_until(plan.entries.len()),
                ctx.generation,
            )),
            Walk::Failed(f) => f.into(),
        }
    }
}

impl Reduce<AuthAnswer> for Outcome<AuthReply> {
    const SERVES: &'static [(Reducer, Reading)] = &[(Reducer::FirstNonNone, Reading::NotNone)];

    async fn reduce<R: CallbackArgs<Answer = AuthAnswer, Reply = Self>>(
        ctx: &DispatchCtx<'_>,
        _: &'static Rules,
        plan: &Plan,
        request: Arc<CallbackRequest>,
    ) -> Self {
        first_value::<R, _, _>(
            ctx,
            plan,
            request,
            |answer, _| answer,
            |success, module| AuthReply {
                user_id: success.as_ref().map(|s| s.user_id.clone()),
                post_login: success.and_then(|s| s.post_login),
                module,
            },
        )
        .await
    }
}

impl Reduce<NameAnswer> for Outcome<NameReply> {
    const SERVES: &'static [(Reducer, Reading)] = &[(Reducer::FirstNonNone, Reading::Text)];

    async fn reduce<R: CallbackArgs<Answer = NameAnswer, Reply = Self>>(
        ctx: &DispatchCtx<'_>,
        _: &'static Rules,
        plan: &Plan,
        request: Arc<CallbackRequest>,
    ) -> Self {
        first_value::<R, _, _>(
            ctx,
            plan,
            request,
            |answer, entry| match answer {
                NameAnswer::Name(name) => name,
                NameAnswer::Other(value) => {
                    tracing::warn!(module = %entry.name, callback = %R::CALLBACK, %value, "ignoring a non-string answer");
                    None
                }
            },
            |name, module| NameReply { name, module },
        )
        .await
    }
}

/// Python's truthiness of a module's value (a FirstNonNone by truthiness skips falsy values).
pub trait Truthiness {
    /// Whether Python would find the value true.
    fn is_truthy(&self) -> bool;
}

impl Truthiness for JsonObject {
    fn is_truthy(&self) -> bool {
        !self.is_empty()
    }
}

impl Truthiness for Vec<MediaUploadLimit> {
    fn is_truthy(&self) -> bool {
        !self.is_empty()
    }
}

impl Truthiness for RatelimitOverride {
    /// An attrs instance is always true.
    fn is_truthy(&self) -> bool {
        true
    }
}

impl<T: Truthiness> Reduce<Option<T>> for Outcome<ValueReply<T>> {
    const SERVES: &'static [(Reducer, Reading)] = &[
        (Reducer::FirstNonNone, Reading::NotNone),
        (Reducer::FirstNonNone, Reading::Truthy),
    ];

    async fn reduce<R: CallbackArgs<Answer = Option<T>, Reply = Self>>(
        ctx: &DispatchCtx<'_>,
        rules: &'static Rules,
        plan: &Plan,
        request: Arc<CallbackRequest>,
    ) -> Self {
        let by_truthiness = rules.reading == Reading::Truthy;
        first_value::<R, _, _>(
            ctx,
            plan,
            request,
            |answer, _| answer.filter(|value| !by_truthiness || value.is_truthy()),
            |value, module| ValueReply { value, module },
        )
        .await
    }
}

impl<T> Reduce<T> for Outcome<SlotReply<T>> {
    const SERVES: &'static [(Reducer, Reading)] = &[(Reducer::SingleSlot, Reading::Value)];

    async fn reduce<R: CallbackArgs<Answer = T, Reply = Self>>(
        ctx: &DispatchCtx<'_>,
        _: &'static Rules,
        plan: &Plan,
        request: Arc<CallbackRequest>,
    ) -> Self {
        match single_slot::<R>(ctx, plan, request).await {
            Walk::Stopped(value, module) => Outcome::Value(SlotReply {
                value: Some(value),
                module: Some(module.to_string()),
            }),
            Walk::Exhausted => Outcome::Value(SlotReply {
                value: None,
                module: None,
            }),
            Walk::Failed(f) => f.into(),
        }
    }
}

impl Reduce<UsersForStatesAnswer> for Outcome<UsersForStatesReply> {
    const SERVES: &'static [(Reducer, Reading)] = &[(Reducer::Union, Reading::Users)];

    async fn reduce<R: CallbackArgs<Answer = UsersForStatesAnswer, Reply = Self>>(
        ctx: &DispatchCtx<'_>,
        _: &'static Rules,
        plan: &Plan,
        request: Arc<CallbackRequest>,
    ) -> Self {
        let mut merged: BTreeMap<String, Vec<UserPresenceState>> = BTreeMap::new();
        let walk = union::<R, ()>(ctx, plan, request, |answer, _| {
            for (user, states) in answer {
                let into = merged.entry(user).or_default();
                for state in states {
                    if !into.contains(&state) {
                        into.push(state);
                    }
                }
            }
            Step::Continue
        })
        .await;
        match walk {
            Walk::Failed(f) => f.into(),
            _ => Outcome::Value(UsersForStatesReply { users: merged }),
        }
    }
}

impl Reduce<InterestedUsers> for Outcome<InterestedUsersReply> {
    const SERVES: &'static [(Reducer, Reading)] = &[(Reducer::Union, Reading::UsersOrAll)];

    async fn reduce<R: CallbackArgs<Answer = InterestedUsers, Reply = Self>>(
        ctx: &DispatchCtx<'_>,
        _: &'static Rules,
        plan: &Plan,
        request: Arc<CallbackRequest>,
    ) -> Self {
        let mut users = BTreeSet::new();
        let walk = union::<R, ()>(ctx, plan, request, |answer, _| match answer {
            InterestedUsers::All(_) => Step::Stop(()),
            InterestedUsers::Users(list) => {
                users.extend(list);
                Step::Continue
            }
        })
        .await;
        match walk {
            Walk::Stopped((), _) => Outcome::Value(InterestedUsersReply {
                users: InterestedUsers::All(AllUsers::All),
            }),
            Walk::Exhausted => Outcome::Value(InterestedUsersReply {
                users: InterestedUsers::Users(users.into_iter().collect()),
            }),
            Walk::Failed(f) => f.into(),
        }
    }
}

impl Reduce<JsonObject> for Outcome<UnsignedReply> {
    const SERVES: &'static [(Reducer, Reading)] = &[(Reducer::Merge, Reading::Fields)];

    async fn reduce<R: CallbackArgs<Answer = JsonObject, Reply = Self>>(
        ctx: &DispatchCtx<'_>,
        _: &'static Rules,
        plan: &Plan,
        request: Arc<CallbackRequest>,
    ) -> Self {
        if plan.entries.is_empty() {
            return Outcome::Value(UnsignedReply {
                fields: JsonObject::new(),
            });
        }
        let mut fields = JsonObject::new();
        let walk = ordered_walk::<R, Answered<()>>(
            ctx,
            plan,
            request,
            Judged::Answer,
            |answer, _| {
                // In plan order, so a later module's key replaces an earlier one's.
                fields.extend(answer);
                Step::Continue
            },
            |_, _| None,
        )
        .await;
        match walk {
            Walk::Failed(f) => f.into(),
            _ => Outcome::Value(UnsignedReply { fields }),
        }
    }
}
