//! The coordinator: looks up a callback's plan, fans the invocation out over the bus, and
//! reduces the answers to the decision Synapse's module system would reach.

pub mod plan;
pub mod reducers;
pub mod rules;

pub use plan::{Plan, PlanEntry, PlanError, Plans};
pub use reducers::{DispatchCtx, Step, Verdict, Walk};
pub use rules::{reducer, Deny, Reducer};

use crate::bus::{Bus, InvocationMeta};
use crate::telemetry::{DispatchTrace, Role, Telemetry};
use arc_swap::ArcSwap;
use glia_bus_schema::errcodes::M_MISSING_PARAM;
use glia_bus_schema::requests::*;
use glia_bus_schema::{
    AuthReply, Callback, CallbackArgs, CallbackRequest, CheckAnswer, Decision, DispatchReply,
    ExpiryReply, InterestedUsers, InterestedUsersReply, InvocationError, JsonObject, NameAnswer,
    NameReply, OnCreateRoomAnswer, Outcome, RegistrationBehaviour, RegistrationReply, SlotReply,
    SpamAnswer, TruthyAnswer, UserPresenceState, UsersForStatesReply,
};
use reducers::{chain, first_deny, first_non_none, run_all, single_slot, union};
use rules::spam_verdict;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A request the coordinator refuses before asking any module.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{error}")]
pub struct DispatchError {
    /// HTTP status (4xx).
    pub status: u16,
    /// Matrix errcode.
    pub errcode: &'static str,
    /// What is wrong.
    pub error: String,
}

/// Dispatches callbacks to modules under their plans.
pub struct Coordinator {
    plans: ArcSwap<Plans>,
    bus: Arc<dyn Bus>,
    deadline: Duration,
    ids: AtomicU64,
    id_prefix: String,
    /// Set when shutdown's grace period is over: pending invocations resolve at once.
    drained: watch::Sender<bool>,
    /// Dispatches in progress, so shutdown knows when they are done.
    active: AtomicUsize,
    /// Spans, metrics and decision records.
    telemetry: Arc<Telemetry>,
}

/// Counts a dispatch as active until it is dropped (finished or cancelled).
struct ActiveGuard<'a>(&'a AtomicUsize);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Coordinator {
    /// A coordinator over `plans`, reaching modules through `bus`, with a default whole-request
    /// deadline.
    pub fn new(plans: Plans, bus: Arc<dyn Bus>, deadline: Duration) -> Self {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        Coordinator {
            plans: ArcSwap::from_pointee(plans),
            bus,
            deadline,
            ids: AtomicU64::new(0),
            id_prefix: format!("{:x}", started & 0xffff_ffff_ffff),
            drained: watch::channel(false).0,
            active: AtomicUsize::new(0),
            telemetry: Arc::new(Telemetry::disabled(Role::Coordinator)),
        }
    }

    /// Reports dispatches to `telemetry` (by default nothing is recorded).
    pub fn with_telemetry(mut self, telemetry: Arc<Telemetry>) -> Self {
        self.telemetry = telemetry;
        self
    }

    /// The telemetry dispatches report to.
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    /// The plans in force.
    pub fn plans(&self) -> Arc<Plans> {
        self.plans.load_full()
    }

    /// Replaces the plans (a module registered late); dispatches in progress keep theirs.
    pub fn set_plans(&self, plans: Plans) {
        self.plans.store(Arc::new(plans));
    }

    /// Dispatches in progress.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Lets dispatches in progress finish for up to `grace`, then resolves what is still
    /// pending through the failure policies, and waits until every dispatch has answered.
    /// Dispatches started afterwards resolve at once.
    pub async fn drain_after(&self, grace: Duration) {
        let until = Instant::now() + grace;
        while self.active() > 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.drained.send_replace(true);
        while self.active() > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// The default whole-request deadline.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// A fresh request id.
    pub fn next_request_id(&self) -> Arc<str> {
        let n = self.ids.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n:x}", self.id_prefix).into()
    }

    /// A fresh decision id: 128 random bits in hex, unique across coordinators.
    pub fn next_decision_id(&self) -> Arc<str> {
        format!("{:032x}", fastrand::u128(..)).into()
    }

    /// Metadata for a new request with the default deadline.
    pub fn new_meta(&self) -> InvocationMeta {
        self.meta(None, opentelemetry::Context::new())
    }

    /// Metadata for a request with the caller's request id (or a fresh one) and trace
    /// context, and the default deadline.
    pub fn meta(
        &self,
        request_id: Option<Arc<str>>,
        trace: opentelemetry::Context,
    ) -> InvocationMeta {
        InvocationMeta {
            request_id: request_id.unwrap_or_else(|| self.next_request_id()),
            decision_id: self.next_decision_id(),
            deadline: Instant::now() + self.deadline,
            trace,
        }
    }

    /// Typed dispatch, for embedding glia as a library.
    pub async fn call<R: CallbackArgs>(&self, args: R) -> Result<R::Reply, DispatchError> {
        let reply = self.dispatch(args.into_request(), self.new_meta()).await?;
        R::unwrap_reply(reply).map_err(|other| DispatchError {
            status: 500,
            errcode: glia_bus_schema::errcodes::M_UNKNOWN,
            error: format!("internal: {} answered as {}", R::CALLBACK, other.callback()),
        })
    }

    /// Dispatches one callback and returns what Synapse would do. The dispatch is traced
    /// (a child of `meta.trace`), counted and recorded under `meta.decision_id`.
    pub async fn dispatch(
        &self,
        request: CallbackRequest,
        meta: InvocationMeta,
    ) -> Result<DispatchReply, DispatchError> {
        self.active.fetch_add(1, Ordering::AcqRel);
        let _active = ActiveGuard(&self.active);
        let trace = DispatchTrace::begin(&self.telemetry, request.callback(), &meta, &request);
        let ctx = DispatchCtx {
            bus: self.bus.as_ref(),
            meta: InvocationMeta {
                trace: trace.context().clone(),
                ..meta
            },
            drained: self.drained.subscribe(),
            trace: &trace,
        };
        let result = self.decide(&ctx, request).await;
        drop(ctx);
        trace.finish(&result);
        result
    }

    async fn decide(
        &self,
        ctx: &DispatchCtx<'_>,
        request: CallbackRequest,
    ) -> Result<DispatchReply, DispatchError> {
        let plans = self.plans.load_full();
        let callback = request.callback();
        let plan = plans.get(callback);
        use CallbackRequest as Q;
        Ok(match request {
            Q::CheckEventForSpam(_)
            | Q::UserMayJoinRoom(_)
            | Q::UserMayInvite(_)
            | Q::UserMaySend3pidInvite(_)
            | Q::UserMayCreateRoom(_)
            | Q::UserMayCreateRoomAlias(_)
            | Q::UserMayPublishRoom(_)
            | Q::UserMaySendStateEvent(_)
            | Q::CheckMediaFileForSpam(_)
            | Q::CheckLoginForSpam(_) => {
                let decision =
                    spam_first_deny(ctx, callback, callback, plan, Arc::new(request)).await;
                reply_decision(callback, decision)
            }
            Q::FederatedUserMayInvite(ref args) => {
                // spec §3.1: FD over federated_user_may_invite, then user_may_invite's own chain.
                let Some(invitee) = args.event.state_key.clone() else {
                    return Err(DispatchError {
                        status: 400,
                        errcode: glia_bus_schema::errcodes::M_BAD_JSON,
                        error: "field `event.state_key`: an invite event names its invitee in state_key".into(),
                    });
                };
                let then = UserMayInvite {
                    inviter: args.event.sender.clone(),
                    invitee,
                    room_id: args.event.room_id.clone().unwrap_or_default(),
                };
                let first = spam_first_deny(ctx, callback, callback, plan, Arc::new(request)).await;
                let decision = if first.is_allow() {
                    let plan = plans.get(Callback::UserMayInvite);
                    spam_first_deny(
                        ctx,
                        callback,
                        Callback::UserMayInvite,
                        plan,
                        Arc::new(then.into_request()),
                    )
                    .await
                } else {
                    first
                };
                DispatchReply::FederatedUserMayInvite(decision)
            }
            Q::ShouldDropFederatedEvent(_) => DispatchReply::ShouldDropFederatedEvent(
                truthy_first_deny::<ShouldDropFederatedEvent>(ctx, plan, Arc::new(request)).await,
            ),
            Q::CheckUsernameForSpam(_) => DispatchReply::CheckUsernameForSpam(
                truthy_first_deny::<CheckUsernameForSpam>(ctx, plan, Arc::new(request)).await,
            ),
            Q::CheckRegistrationForSpam(_) => {
                let walk = first_deny::<CheckRegistrationForSpam, RegistrationBehaviour>(
                    ctx,
                    plan,
                    Arc::new(request),
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
                DispatchReply::CheckRegistrationForSpam(match walk {
                    Walk::Stopped(behaviour, module) => Outcome::Value(RegistrationReply {
                        behaviour,
                        module: Some(module.to_string()),
                    }),
                    Walk::Exhausted => Outcome::Value(RegistrationReply {
                        behaviour: RegistrationBehaviour::Allow,
                        module: None,
                    }),
                    Walk::Failed(f) => f.into(),
                })
            }
            Q::CheckEventAllowed(_) => {
                enum EventVerdict {
                    Deny(Deny),
                    Replace(JsonObject),
                }
                impl Verdict for EventVerdict {
                    fn verdict(&self) -> (crate::telemetry::Outcome, Option<&str>) {
                        match self {
                            EventVerdict::Deny(d) => d.verdict(),
                            EventVerdict::Replace(_) => (crate::telemetry::Outcome::Answer, None),
                        }
                    }
                }
                let walk = first_deny::<CheckEventAllowed, EventVerdict>(
                    ctx,
                    plan,
                    Arc::new(request),
                    |answer, _| match answer {
                        a if a.allowed == Some(false) => {
                            Step::Stop(EventVerdict::Deny(Deny::default_for(callback)))
                        }
                        glia_bus_schema::CheckEventAllowedAnswer {
                            replacement: Some(event),
                            ..
                        } => Step::Stop(EventVerdict::Replace(event)),
                        _ => Step::Continue,
                    },
                    |error, _| Step::Stop(EventVerdict::Deny(policy_deny(callback, error))),
                )
                .await;
                DispatchReply::CheckEventAllowed(match walk {
                    Walk::Stopped(EventVerdict::Deny(d), module) => deny_decision(d, &module),
                    Walk::Stopped(EventVerdict::Replace(event), module) => Decision::Allow {
                        replacement: Some(event),
                        request_content: None,
                        module: Some(module.to_string()),
                    },
                    Walk::Exhausted => Decision::ALLOW,
                    Walk::Failed(f) => Decision::Error(f),
                })
            }
            Q::OnCreateRoom(_) => {
                DispatchReply::OnCreateRoom(on_create_room(ctx, plan, Arc::new(request)).await)
            }
            Q::CheckThreepidCanBeInvited(_) => DispatchReply::CheckThreepidCanBeInvited(
                check_first_deny::<CheckThreepidCanBeInvited>(ctx, plan, Arc::new(request)).await,
            ),
            Q::CheckVisibilityCanBeModified(_) => DispatchReply::CheckVisibilityCanBeModified(
                check_first_deny::<CheckVisibilityCanBeModified>(ctx, plan, Arc::new(request))
                    .await,
            ),
            Q::CheckCanShutdownRoom(_) => DispatchReply::CheckCanShutdownRoom(
                check_first_deny::<CheckCanShutdownRoom>(ctx, plan, Arc::new(request)).await,
            ),
            Q::CheckCanDeactivateUser(_) => DispatchReply::CheckCanDeactivateUser(
                check_first_deny::<CheckCanDeactivateUser>(ctx, plan, Arc::new(request)).await,
            ),
            Q::Is3pidAllowed(_) => DispatchReply::Is3pidAllowed(
                check_first_deny::<Is3pidAllowed>(ctx, plan, Arc::new(request)).await,
            ),
            Q::OnNewEvent(_) => {
                DispatchReply::OnNewEvent(notify::<OnNewEvent>(ctx, plan, request).await)
            }
            Q::OnProfileUpdate(_) => {
                DispatchReply::OnProfileUpdate(notify::<OnProfileUpdate>(ctx, plan, request).await)
            }
            Q::OnUserDeactivationStatusChanged(_) => {
                DispatchReply::OnUserDeactivationStatusChanged(
                    notify::<OnUserDeactivationStatusChanged>(ctx, plan, request).await,
                )
            }
            Q::OnThreepidBind(_) => {
                DispatchReply::OnThreepidBind(notify::<OnThreepidBind>(ctx, plan, request).await)
            }
            Q::OnAddUserThirdPartyIdentifier(_) => DispatchReply::OnAddUserThirdPartyIdentifier(
                notify::<OnAddUserThirdPartyIdentifier>(ctx, plan, request).await,
            ),
            Q::OnRemoveUserThirdPartyIdentifier(_) => {
                DispatchReply::OnRemoveUserThirdPartyIdentifier(
                    notify::<OnRemoveUserThirdPartyIdentifier>(ctx, plan, request).await,
                )
            }
            Q::OnUserRegistration(_) => DispatchReply::OnUserRegistration(
                notify::<OnUserRegistration>(ctx, plan, request).await,
            ),
            Q::OnUserLogin(_) => {
                DispatchReply::OnUserLogin(notify::<OnUserLogin>(ctx, plan, request).await)
            }
            Q::OnLoggedOut(_) => {
                DispatchReply::OnLoggedOut(notify::<OnLoggedOut>(ctx, plan, request).await)
            }
            Q::IsUserExpired(_) => {
                let walk = first_non_none::<IsUserExpired, bool>(
                    ctx,
                    plan,
                    Arc::new(request),
                    |a, _| a,
                    |_, _| Some(true),
                )
                .await;
                DispatchReply::IsUserExpired(match walk {
                    Walk::Stopped(expired, module) => Outcome::Value(ExpiryReply {
                        expired: Some(expired),
                        module: Some(module.to_string()),
                    }),
                    Walk::Exhausted => Outcome::Value(ExpiryReply {
                        expired: None,
                        module: None,
                    }),
                    Walk::Failed(f) => f.into(),
                })
            }
            Q::GetUsersForStates(_) => {
                let mut users: BTreeMap<String, Vec<UserPresenceState>> = BTreeMap::new();
                let walk =
                    union::<GetUsersForStates, ()>(ctx, plan, Arc::new(request), |answer, _| {
                        for (user, states) in answer {
                            let merged = users.entry(user).or_default();
                            for state in states {
                                if !merged.contains(&state) {
                                    merged.push(state);
                                }
                            }
                        }
                        Step::Continue
                    })
                    .await;
                DispatchReply::GetUsersForStates(match walk {
                    Walk::Failed(f) => f.into(),
                    _ => Outcome::Value(UsersForStatesReply { users }),
                })
            }
            Q::GetInterestedUsers(_) => {
                let mut users = BTreeSet::new();
                let walk =
                    union::<GetInterestedUsers, ()>(ctx, plan, Arc::new(request), |answer, _| {
                        match answer {
                            InterestedUsers::All(_) => Step::Stop(()),
                            InterestedUsers::Users(more) => {
                                users.extend(more);
                                Step::Continue
                            }
                        }
                    })
                    .await;
                DispatchReply::GetInterestedUsers(match walk {
                    Walk::Stopped((), _) => Outcome::Value(InterestedUsersReply {
                        users: InterestedUsers::All(glia_bus_schema::AllUsers::All),
                    }),
                    Walk::Exhausted => Outcome::Value(InterestedUsersReply {
                        users: InterestedUsers::Users(users.into_iter().collect()),
                    }),
                    Walk::Failed(f) => f.into(),
                })
            }
            Q::CheckAuth(args) => {
                let Some(auth) = plans.auth(&args.login_type) else {
                    return Ok(DispatchReply::CheckAuth(Outcome::Value(AuthReply {
                        user_id: None,
                        module: None,
                    })));
                };
                let missing: Vec<&str> = auth
                    .fields
                    .iter()
                    .filter(|f| !args.login_dict.contains_key(f.as_str()))
                    .map(String::as_str)
                    .collect();
                if !missing.is_empty() {
                    return Err(DispatchError {
                        status: 400,
                        errcode: M_MISSING_PARAM,
                        error: format!(
                            "Missing parameters for login type {}: {}",
                            args.login_type,
                            missing.join(", ")
                        ),
                    });
                }
                // The checkers see exactly the fields they registered (spec §3.5).
                let login_dict: JsonObject = auth
                    .fields
                    .iter()
                    .filter_map(|f| args.login_dict.get(f).map(|v| (f.clone(), v.clone())))
                    .collect();
                let request = CheckAuth { login_dict, ..args };
                DispatchReply::CheckAuth(
                    auth_first_non_none::<CheckAuth>(
                        ctx,
                        &auth.plan,
                        Arc::new(request.into_request()),
                    )
                    .await,
                )
            }
            Q::Check3pidAuth(_) => DispatchReply::Check3pidAuth(
                auth_first_non_none::<Check3pidAuth>(ctx, plan, Arc::new(request)).await,
            ),
            Q::GetUsernameForRegistration(_) => DispatchReply::GetUsernameForRegistration(
                name_first_non_none::<GetUsernameForRegistration>(ctx, plan, Arc::new(request))
                    .await,
            ),
            Q::GetDisplaynameForRegistration(_) => DispatchReply::GetDisplaynameForRegistration(
                name_first_non_none::<GetDisplaynameForRegistration>(ctx, plan, Arc::new(request))
                    .await,
            ),
            Q::OnLegacySendMail(_) => DispatchReply::OnLegacySendMail(
                match single_slot::<OnLegacySendMail>(ctx, plan, Arc::new(request)).await {
                    Walk::Failed(f) => Decision::Error(f),
                    _ => Decision::ALLOW,
                },
            ),
            Q::OnLegacyRenew(_) => DispatchReply::OnLegacyRenew(slot_reply(
                single_slot::<OnLegacyRenew>(ctx, plan, Arc::new(request)).await,
            )),
            Q::OnLegacyAdminRequest(_) => DispatchReply::OnLegacyAdminRequest(slot_reply(
                single_slot::<OnLegacyAdminRequest>(ctx, plan, Arc::new(request)).await,
            )),
        })
    }
}

fn reply_decision(callback: Callback, decision: Decision) -> DispatchReply {
    use Callback::*;
    match callback {
        CheckEventForSpam => DispatchReply::CheckEventForSpam(decision),
        UserMayJoinRoom => DispatchReply::UserMayJoinRoom(decision),
        UserMayInvite => DispatchReply::UserMayInvite(decision),
        UserMaySend3pidInvite => DispatchReply::UserMaySend3pidInvite(decision),
        UserMayCreateRoom => DispatchReply::UserMayCreateRoom(decision),
        UserMayCreateRoomAlias => DispatchReply::UserMayCreateRoomAlias(decision),
        UserMayPublishRoom => DispatchReply::UserMayPublishRoom(decision),
        UserMaySendStateEvent => DispatchReply::UserMaySendStateEvent(decision),
        CheckMediaFileForSpam => DispatchReply::CheckMediaFileForSpam(decision),
        CheckLoginForSpam => DispatchReply::CheckLoginForSpam(decision),
        other => unreachable!("{other} is not a spam-checker yes/no callback"),
    }
}

/// What a failure under policy `deny` denies with: the module's own `SynapseError` if it
/// raised one, else the callback's usual deny.
fn policy_deny(callback: Callback, error: &InvocationError) -> Deny {
    match error {
        InvocationError::Failed {
            synapse_error: Some(e),
            ..
        } => Deny {
            errcode: e.errcode.clone(),
            message: e.error.clone(),
            fields: JsonObject::new(),
        },
        _ => Deny::default_for(callback),
    }
}

fn deny_decision(deny: Deny, module: &str) -> Decision {
    Decision::Deny {
        errcode: deny.errcode,
        error: deny.message,
        fields: deny.fields,
        module: module.to_owned(),
        status: None,
    }
}

fn decision(walk: Walk<Deny>) -> Decision {
    match walk {
        Walk::Stopped(deny, module) => deny_decision(deny, &module),
        Walk::Exhausted => Decision::ALLOW,
        Walk::Failed(f) => Decision::Error(f),
    }
}

/// FirstDeny over spam-checker answers; `messages` picks the deny texts, `args` the request
/// type (they differ for `federated_user_may_invite`'s fall-through to `user_may_invite`).
async fn spam_first_deny(
    ctx: &DispatchCtx<'_>,
    messages: Callback,
    args: Callback,
    plan: &Plan,
    request: Arc<CallbackRequest>,
) -> Decision {
    async fn walk<R: CallbackArgs<Answer = SpamAnswer>>(
        ctx: &DispatchCtx<'_>,
        messages: Callback,
        plan: &Plan,
        request: Arc<CallbackRequest>,
    ) -> Decision {
        decision(
            first_deny::<R, Deny>(
                ctx,
                plan,
                request,
                |answer, _| spam_verdict(messages, &answer).map_or(Step::Continue, Step::Stop),
                |error, _| Step::Stop(policy_deny(messages, error)),
            )
            .await,
        )
    }
    match args {
        Callback::CheckEventForSpam => {
            walk::<CheckEventForSpam>(ctx, messages, plan, request).await
        }
        Callback::UserMayJoinRoom => walk::<UserMayJoinRoom>(ctx, messages, plan, request).await,
        Callback::UserMayInvite => walk::<UserMayInvite>(ctx, messages, plan, request).await,
        Callback::FederatedUserMayInvite => {
            walk::<FederatedUserMayInvite>(ctx, messages, plan, request).await
        }
        Callback::UserMaySend3pidInvite => {
            walk::<UserMaySend3pidInvite>(ctx, messages, plan, request).await
        }
        Callback::UserMayCreateRoom => {
            walk::<UserMayCreateRoom>(ctx, messages, plan, request).await
        }
        Callback::UserMayCreateRoomAlias => {
            walk::<UserMayCreateRoomAlias>(ctx, messages, plan, request).await
        }
        Callback::UserMayPublishRoom => {
            walk::<UserMayPublishRoom>(ctx, messages, plan, request).await
        }
        Callback::UserMaySendStateEvent => {
            walk::<UserMaySendStateEvent>(ctx, messages, plan, request).await
        }
        Callback::CheckMediaFileForSpam => {
            walk::<CheckMediaFileForSpam>(ctx, messages, plan, request).await
        }
        Callback::CheckLoginForSpam => {
            walk::<CheckLoginForSpam>(ctx, messages, plan, request).await
        }
        other => unreachable!("{other} does not answer with SpamAnswer"),
    }
}

/// FirstDeny on truthiness: a truthy answer denies (drops the event, hides the user).
async fn truthy_first_deny<R: CallbackArgs<Answer = TruthyAnswer>>(
    ctx: &DispatchCtx<'_>,
    plan: &Plan,
    request: Arc<CallbackRequest>,
) -> Decision {
    decision(
        first_deny::<R, Deny>(
            ctx,
            plan,
            request,
            |answer, _| {
                if answer.is_truthy() {
                    Step::Stop(Deny::default_for(R::CALLBACK))
                } else {
                    Step::Continue
                }
            },
            |error, _| Step::Stop(policy_deny(R::CALLBACK, error)),
        )
        .await,
    )
}

/// FirstDeny where only `false` denies (the third-party yes/no checks, `is_3pid_allowed`).
async fn check_first_deny<R: CallbackArgs<Answer = CheckAnswer>>(
    ctx: &DispatchCtx<'_>,
    plan: &Plan,
    request: Arc<CallbackRequest>,
) -> Decision {
    decision(
        first_deny::<R, Deny>(
            ctx,
            plan,
            request,
            |answer, _| {
                if answer.is_false() {
                    Step::Stop(Deny::default_for(R::CALLBACK))
                } else {
                    Step::Continue
                }
            },
            |error, _| Step::Stop(policy_deny(R::CALLBACK, error)),
        )
        .await,
    )
}

/// FirstNonNone for auth checkers: the first user id wins; a failure under `deny` refuses.
async fn auth_first_non_none<R: CallbackArgs<Answer = glia_bus_schema::AuthAnswer>>(
    ctx: &DispatchCtx<'_>,
    plan: &Plan,
    request: Arc<CallbackRequest>,
) -> Outcome<AuthReply> {
    let walk = first_non_none::<R, Option<String>>(
        ctx,
        plan,
        request,
        |answer, _| answer.map(|a| Some(a.user_id)),
        |_, _| None,
    )
    .await;
    match walk {
        Walk::Stopped(Some(user_id), module) => Outcome::Value(AuthReply {
            user_id: Some(user_id),
            module: Some(module.to_string()),
        }),
        Walk::Stopped(None, _) | Walk::Exhausted => Outcome::Value(AuthReply {
            user_id: None,
            module: None,
        }),
        Walk::Failed(f) => f.into(),
    }
}

/// FirstNonNone for registration names: the first string wins; other values are ignored.
async fn name_first_non_none<R: CallbackArgs<Answer = NameAnswer>>(
    ctx: &DispatchCtx<'_>,
    plan: &Plan,
    request: Arc<CallbackRequest>,
) -> Outcome<NameReply> {
    let walk = first_non_none::<R, Option<String>>(
        ctx,
        plan,
        request,
        |answer, entry| match answer {
            NameAnswer::Name(name) => name.map(Some),
            NameAnswer::Other(value) => {
                tracing::warn!(module = %entry.name, callback = %R::CALLBACK, %value, "ignoring a non-string answer");
                None
            }
        },
        |_, _| None,
    )
    .await;
    match walk {
        Walk::Stopped(Some(name), module) => Outcome::Value(NameReply {
            name: Some(name),
            module: Some(module.to_string()),
        }),
        Walk::Stopped(None, _) | Walk::Exhausted => Outcome::Value(NameReply {
            name: None,
            module: None,
        }),
        Walk::Failed(f) => f.into(),
    }
}

/// RunAll for notifications.
async fn notify<R: CallbackArgs>(
    ctx: &DispatchCtx<'_>,
    plan: &Plan,
    request: CallbackRequest,
) -> Decision {
    if plan.entries.is_empty() {
        return Decision::ALLOW;
    }
    match run_all::<R>(ctx, plan, Arc::new(request)).await {
        Ok(()) => Decision::ALLOW,
        Err(f) => Decision::Error(f),
    }
}

fn slot_reply<T>(walk: Walk<T>) -> Outcome<SlotReply<T>> {
    match walk {
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

/// Chain for `on_create_room`: each module sees the previous one's edits; the first refusal
/// (or failure under `deny`) ends it (spec §3.2).
async fn on_create_room(
    ctx: &DispatchCtx<'_>,
    plan: &Plan,
    request: Arc<CallbackRequest>,
) -> Decision {
    let callback = Callback::OnCreateRoom;
    let refused = |entry: &PlanEntry| deny_decision(Deny::default_for(callback), &entry.name);
    let result = chain::<OnCreateRoom, Decision>(
        ctx,
        plan,
        request,
        |answer, entry, current| match answer {
            OnCreateRoomAnswer::Deny { deny } => Err(Decision::Deny {
                errcode: deny.errcode,
                error: deny.error,
                fields: JsonObject::new(),
                module: entry.name.to_string(),
                status: Some(deny.status),
            }),
            OnCreateRoomAnswer::Legacy(false) => Err(refused(entry)),
            OnCreateRoomAnswer::Continue(glia_bus_schema::RoomContent {
                request_content: Some(content),
            }) => {
                let CallbackRequest::OnCreateRoom(args) = current.as_ref() else {
                    unreachable!("the chain carries on_create_room requests")
                };
                Ok(Arc::new(CallbackRequest::OnCreateRoom(OnCreateRoom {
                    requester: args.requester.clone(),
                    request_content: content,
                    is_requester_admin: args.is_requester_admin,
                })))
            }
            OnCreateRoomAnswer::Continue(glia_bus_schema::RoomContent {
                request_content: None,
            })
            | OnCreateRoomAnswer::Legacy(true)
            | OnCreateRoomAnswer::Unchanged => Ok(current.clone()),
        },
        |error, entry| match entry.policy {
            crate::policy::FailurePolicy::Allow => None,
            crate::policy::FailurePolicy::Deny => Some(match error {
                InvocationError::Failed {
                    synapse_error: Some(e),
                    ..
                } => Decision::Deny {
                    errcode: e.errcode.clone(),
                    error: e.error.clone(),
                    fields: JsonObject::new(),
                    module: entry.name.to_string(),
                    status: Some(e.status),
                },
                _ => refused(entry),
            }),
            crate::policy::FailurePolicy::Error => {
                Some(Decision::Error(reducers::failure(callback, entry, error)))
            }
        },
    )
    .await;
    match result {
        Ok(request) => match Arc::try_unwrap(request).unwrap_or_else(|shared| (*shared).clone()) {
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
