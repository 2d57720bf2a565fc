//! Per-callback plans, computed once at start-up: which modules, in what order, with what
//! timeout and failure policy.

use crate::config::ModuleConfig;
use crate::host::{RegistrationSummary, Slot};
use crate::policy::{FailurePolicy, Invoke, Mode, Rollout};
use crate::rules::{rules, Registration};
use glia_bus_schema::Callback;
use glia_module_api::registration::BACKGROUND_CONTROLLER;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// One module's part in a callback.
#[derive(Debug, Clone)]
pub struct PlanEntry {
    /// Index of the module in config order.
    pub module: usize,
    /// Its name.
    pub name: Arc<str>,
    /// The handler.
    pub slot: Slot,
    /// Its timeout.
    pub timeout: Duration,
    /// What its failure means for this callback.
    pub policy: FailurePolicy,
    /// When it is invoked for this callback.
    pub invoke: Invoke,
    /// Whether its answers are applied for this callback.
    pub stage: Stage,
}

/// Whether an entry's answers are applied: always, never (recorded only), or for the
/// subjects a rollout selects.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stage {
    /// Applied.
    Enforce,
    /// Recorded, never applied.
    Audit,
    /// Applied for the rollout's share of subjects, recorded for the rest.
    Rollout(Rollout),
}

/// The ordered entries of one callback.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// In priority order.
    pub entries: Vec<PlanEntry>,
}

impl Plan {
    /// Whether some entry is audited, always or outside its rollout.
    pub fn is_staged(&self) -> bool {
        self.entries.iter().any(|e| e.stage != Stage::Enforce)
    }
}

/// The auth checkers of one login type.
#[derive(Debug, Clone)]
pub struct AuthPlan {
    /// The fields every login dict of this type must carry.
    pub fields: Vec<String>,
    /// The checkers, in priority order.
    pub plan: Plan,
}

/// A registration Synapse would refuse at start-up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// spec §2.2: a single-slot callback registered by two modules.
    #[error("Tried to register {callback} twice: by modules[{first}] ({first_name}) and modules[{second}] ({second_name})")]
    SingleSlotTwice {
        /// The callback.
        callback: Callback,
        /// First module's index.
        first: usize,
        /// First module's name.
        first_name: String,
        /// Second module's index.
        second: usize,
        /// Second module's name.
        second_name: String,
    },
    /// spec §2.2: a module registered what Synapse refuses (one of the presence router's
    /// pair, a background-update controller without `on_update`, ...).
    #[error("modules[{index}] ({name}): {error}")]
    Registration {
        /// The module's index.
        index: usize,
        /// Its name.
        name: String,
        /// What Synapse would refuse.
        error: glia_module_api::RegistrationError,
    },
    /// spec §2.2: one login type registered again with other fields where Synapse refuses it
    /// (the earlier field list names the login type itself: `login_fields_clash`).
    #[error("login type {login_type:?} is registered with fields {first:?} by {first_name} and with fields {second:?} by {second_name}")]
    AuthFieldsConflict {
        /// The login type.
        login_type: String,
        /// Fields first registered.
        first: Vec<String>,
        /// By whom.
        first_name: String,
        /// Fields registered later.
        second: Vec<String>,
        /// By whom.
        second_name: String,
    },
}

/// Every callback's plan.
#[derive(Debug, Clone, Default)]
pub struct Plans {
    by_callback: Vec<Plan>,
    auth: HashMap<String, AuthPlan>,
}

/// The module being planned: its config index, its name (one `Arc` its entries share) and
/// its config, which make each of its entries.
struct Planned<'a> {
    index: usize,
    name: Arc<str>,
    config: &'a ModuleConfig,
}

impl Planned<'_> {
    /// The module's entry for `callback` through `slot`, with its timeout and its policies
    /// for that callback.
    fn entry(&self, slot: Slot, callback: Callback) -> PlanEntry {
        PlanEntry {
            module: self.index,
            name: self.name.clone(),
            slot,
            timeout: self.config.timeout,
            policy: self.config.failure_policy.for_callback(callback),
            invoke: self.config.invoke.for_callback(callback),
            stage: match (self.config.mode.for_callback(callback), self.config.rollout) {
                (Mode::Audit, _) => Stage::Audit,
                (Mode::Rollout, Some(rollout)) => Stage::Rollout(rollout),
                _ => Stage::Enforce,
            },
        }
    }

    /// Whether the module's registration of `callback` joins `plan`, by the callback's
    /// registration rule (spec §2.2); a second module in a single slot is an error.
    /// `controller_taken`: the module whose background-update controller was kept, if any.
    fn admitted(
        &self,
        plan: &Plan,
        callback: Callback,
        controller_taken: Option<&Arc<str>>,
    ) -> Result<bool, PlanError> {
        match rules(callback).registration {
            Registration::Many => {}
            Registration::OneRefusingOthers => {
                if let Some(first) = plan.entries.first() {
                    return Err(PlanError::SingleSlotTwice {
                        callback,
                        first: first.module,
                        first_name: first.name.to_string(),
                        second: self.index,
                        second_name: self.config.name.clone(),
                    });
                }
            }
            Registration::FirstKept => {
                debug_assert!(BACKGROUND_CONTROLLER.contains(&callback));
                if let Some(kept) = controller_taken {
                    tracing::warn!(
                        module = %self.config.name,
                        %callback,
                        kept = %kept,
                        "another module's background update controller was registered first; ignoring this one, as Synapse does"
                    );
                    return Ok(false);
                }
                if !plan.entries.is_empty() {
                    // A module registered the controller twice: the first is kept.
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }
}

/// The rules Synapse enforces as a module registers, for every module however it registered
/// (its typed API, an adapter, or a remote module's description), checked in config order.
fn check_registrations(modules: &[(&ModuleConfig, &RegistrationSummary)]) -> Result<(), PlanError> {
    for (i, (config, summary)) in modules.iter().enumerate() {
        glia_module_api::check_described(&summary.callbacks, &summary.auth_checkers).map_err(
            |error| PlanError::Registration {
                index: i,
                name: config.name.clone(),
                error,
            },
        )?;
    }
    Ok(())
}

impl Plans {
    /// Builds the plans from each module's config and registrations (both in config order).
    pub fn build(modules: &[(&ModuleConfig, &RegistrationSummary)]) -> Result<Plans, PlanError> {
        let mut order: Vec<usize> = (0..modules.len()).collect();
        // Higher priority first; equal priorities keep config order (a stable sort).
        order.sort_by_key(|&i| std::cmp::Reverse(modules[i].0.priority));

        let mut plans = Plans {
            by_callback: vec![Plan::default(); Callback::ALL.len()],
            auth: HashMap::new(),
        };
        check_registrations(modules)?;
        for &i in &order {
            let (config, summary) = modules[i];
            let module = Planned {
                index: i,
                name: config.name.as_str().into(),
                config,
            };
            plans.add_callbacks(&module, &summary.callbacks)?;
            plans.add_auth_checkers(&module, &summary.auth_checkers)?;
        }
        Ok(plans)
    }

    /// Adds a module's callbacks (in its registration order, its slots) to their plans.
    fn add_callbacks(&mut self, module: &Planned, callbacks: &[Callback]) -> Result<(), PlanError> {
        // spec §2.2: the first background-update controller is kept whole; a later one is
        // ignored whole (its optional callbacks too), with a warning.
        let controller_taken = self.by_callback[Callback::OnUpdate.index()]
            .entries
            .first()
            .map(|first| first.name.clone());
        for (slot, &callback) in callbacks.iter().enumerate() {
            let plan = &mut self.by_callback[callback.index()];
            if module.admitted(plan, callback, controller_taken.as_ref())? {
                plan.entries
                    .push(module.entry(Slot::Callback(slot), callback));
            }
        }
        Ok(())
    }

    /// Adds a module's auth checkers to their login types' plans, in registration order. A
    /// login type registered again with other fields takes the later ones (a login is checked
    /// against them) and keeps every checker, as Synapse does; only Synapse's own refusal
    /// (`login_fields_clash`) stops the start.
    fn add_auth_checkers(
        &mut self,
        module: &Planned,
        checkers: &[(String, Vec<String>)],
    ) -> Result<(), PlanError> {
        for (slot, (login_type, fields)) in checkers.iter().enumerate() {
            let auth = self
                .auth
                .entry(login_type.clone())
                .or_insert_with(|| AuthPlan {
                    fields: fields.clone(),
                    plan: Plan::default(),
                });
            if auth.fields != *fields
                && !glia_module_api::login_fields_clash(login_type, &auth.fields, fields)
            {
                tracing::warn!(
                    %login_type,
                    earlier = ?auth.fields,
                    later = ?fields,
                    module = %module.config.name,
                    "login type registered again with other fields: as in Synapse, logins must carry the later ones and every module's checker is asked"
                );
                auth.fields = fields.clone();
            } else if auth.fields != *fields {
                let first_name = auth
                    .plan
                    .entries
                    .first()
                    .map(|e| e.name.to_string())
                    .unwrap_or_default();
                return Err(PlanError::AuthFieldsConflict {
                    login_type: login_type.clone(),
                    first: auth.fields.clone(),
                    first_name,
                    second: fields.clone(),
                    second_name: module.config.name.clone(),
                });
            }
            auth.plan
                .entries
                .push(module.entry(Slot::AuthChecker(slot), Callback::CheckAuth));
        }
        Ok(())
    }

    /// The plan of `callback` (for `check_auth`, use [`Plans::auth`]).
    pub fn get(&self, callback: Callback) -> &Plan {
        &self.by_callback[callback.index()]
    }

    /// The auth checkers of `login_type`.
    pub fn auth(&self, login_type: &str) -> Option<&AuthPlan> {
        self.auth.get(login_type)
    }

    /// Login types with at least one checker, sorted.
    pub fn login_types(&self) -> Vec<&str> {
        let mut types: Vec<&str> = self.auth.keys().map(String::as_str).collect();
        types.sort_unstable();
        types
    }
}
