//! State that every instance of one module entry shares, whatever thread it runs on.
//!
//! A stateless module runs an instance on each thread that dispatches to it
//! (`instances: per_thread`), so a synchronous handler answers without a thread hop. A
//! module with state can run that way too if it keeps its state here, behind a lock of its
//! own, instead of in the instance: the first instance built makes it, every later one (on
//! another thread, or rebuilt after a crash) gets the same value. A reload that changes the
//! module's entry starts a new entry, with state made afresh.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// The values one module entry's instances share, one per type.
#[derive(Clone, Default)]
pub struct SharedState(Arc<Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>>);

impl SharedState {
    /// An empty set, for a newly started module entry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The shared `T`, made by `init` if no instance made one yet.
    pub fn get_or_init<T: Send + Sync + 'static>(&self, init: impl FnOnce() -> T) -> Arc<T> {
        // A panic in another instance's `init` leaves the map as it was: nothing to repair.
        let mut values = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let value = values
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Arc::new(init()))
            .clone();
        drop(values);
        value
            .downcast::<T>()
            .unwrap_or_else(|_| unreachable!("stored under its own TypeId"))
    }
}

impl std::fmt::Debug for SharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let values = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("SharedState")
            .field("values", &values.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn every_instance_gets_the_value_the_first_made() {
        let shared = SharedState::new();
        let first = shared.get_or_init(|| AtomicU32::new(1));
        first.fetch_add(1, Ordering::Relaxed);
        let elsewhere = shared.clone();
        let second = std::thread::spawn(move || elsewhere.get_or_init(|| AtomicU32::new(100)))
            .join()
            .unwrap();
        assert_eq!(second.load(Ordering::Relaxed), 2, "not made again");
        assert!(Arc::ptr_eq(&first, &second));
        let other_type = shared.get_or_init(|| String::from("x"));
        assert_eq!(*other_type, "x", "one value per type");
        let fresh = SharedState::new().get_or_init(|| AtomicU32::new(7));
        assert_eq!(
            fresh.load(Ordering::Relaxed),
            7,
            "another entry starts afresh"
        );
    }

    #[test]
    fn a_panicking_init_leaves_the_next_instance_a_working_set() {
        let shared = SharedState::new();
        let crashing = shared.clone();
        let crashed = std::thread::spawn(move || {
            crashing.get_or_init::<u32>(|| panic!("constructor bug"));
        })
        .join();
        assert!(crashed.is_err());
        assert_eq!(*shared.get_or_init(|| 5u32), 5);
    }
}
