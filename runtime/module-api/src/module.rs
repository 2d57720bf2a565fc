//! The `Module` trait, and the registry that maps `module:` names to module types.

use crate::config_error::ConfigError;
use crate::error::ModuleError;
use crate::registration::ModuleApi;
use serde_json::Value;
use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A glia module: parse its config once, then build instances from it (at start-up, and again
/// whenever the supervisor rebuilds a crashed instance).
pub trait Module: Sized + 'static {
    /// The name used in `module:`.
    const NAME: &'static str;
    /// The checked config.
    type Config: Clone + Send + Sync + 'static;
    /// Whether an instance keeps no state of its own between calls and its handlers never
    /// block their thread. glia then runs, by default, an instance on each thread that
    /// dispatches (`instances: per_thread`), so a synchronous handler answers with no thread
    /// hop. State kept through [`ModuleApi::shared`] (behind a lock held briefly) is one for
    /// all instances, so a module keeping its state there may say `true`; a module keeping
    /// state in the instance must say `false` (the default): it keeps one instance.
    const STATELESS: bool = false;

    /// Checks the `config:` block (Synapse's `parse_config`); errors name a path inside it.
    fn parse_config(config: &Value) -> Result<Self::Config, ConfigError>;

    /// Builds an instance and registers its callbacks through `api`.
    fn new(config: Self::Config, api: &mut ModuleApi) -> Result<Self, ModuleError>;
}

/// A parsed config of some module type, shareable across threads.
#[derive(Clone)]
pub struct ParsedConfig(Arc<dyn Any + Send + Sync>);

impl ParsedConfig {
    /// Wraps a parsed config (for factories that are not a [`Module`] type, such as the
    /// adapter that runs Python modules in a host process).
    pub fn new<T: Send + Sync + 'static>(config: T) -> Self {
        ParsedConfig(Arc::new(config))
    }

    /// The parsed config, if it is a `T`.
    pub fn get<T: 'static>(&self) -> Option<&T> {
        self.0.downcast_ref::<T>()
    }
}

/// A module type, with its type erased so the registry can hold many.
pub trait ModuleFactory: Send + Sync {
    /// The name used in `module:`.
    fn name(&self) -> &'static str;
    /// Checks a `config:` block.
    fn parse_config(&self, config: &Value) -> Result<ParsedConfig, ConfigError>;
    /// Whether instances are stateless ([`Module::STATELESS`]): one per dispatching thread
    /// by default.
    fn stateless(&self) -> bool {
        false
    }
    /// Builds an instance; it runs on the instance's own thread.
    fn build(
        &self,
        config: &ParsedConfig,
        api: &mut ModuleApi,
    ) -> Result<Box<dyn Any>, ModuleError>;
}

struct Factory<M: Module>(std::marker::PhantomData<fn() -> M>);

impl<M: Module> ModuleFactory for Factory<M> {
    fn name(&self) -> &'static str {
        M::NAME
    }

    fn parse_config(&self, config: &Value) -> Result<ParsedConfig, ConfigError> {
        M::parse_config(config).map(|c| ParsedConfig(Arc::new(c)))
    }

    fn stateless(&self) -> bool {
        M::STATELESS
    }

    fn build(
        &self,
        config: &ParsedConfig,
        api: &mut ModuleApi,
    ) -> Result<Box<dyn Any>, ModuleError> {
        let config = config
            .0
            .downcast_ref::<M::Config>()
            .ok_or_else(|| {
                ModuleError::fatal(format!("config given to {} is of another module", M::NAME))
            })?
            .clone();
        Ok(Box::new(M::new(config, api)?))
    }
}

/// The module types glia knows, by name.
#[derive(Clone, Default)]
pub struct ModuleRegistry {
    factories: BTreeMap<&'static str, Arc<dyn ModuleFactory>>,
}

impl ModuleRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds module type `M` under `M::NAME`.
    pub fn register<M: Module>(&mut self) -> &mut Self {
        self.factories
            .insert(M::NAME, Arc::new(Factory::<M>(std::marker::PhantomData)));
        self
    }

    /// `register`, by value, for building a registry in one expression.
    pub fn with<M: Module>(mut self) -> Self {
        self.register::<M>();
        self
    }

    /// The module type called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<dyn ModuleFactory>> {
        self.factories.get(name).cloned()
    }

    /// Every known name, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        self.factories.keys().copied().collect()
    }

    /// Adds every module type of `other`.
    pub fn extend(&mut self, other: &ModuleRegistry) {
        self.factories
            .extend(other.factories.iter().map(|(k, v)| (*k, v.clone())));
    }
}
