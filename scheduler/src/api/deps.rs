//! Typed dependency injection: values the application provides to the scheduler
//! and that tasks receive as [`Dep<T>`] parameters.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, RwLock};

/// A dependency injected into a task from the values given to
/// [`SchedulerBuilder::provide`](crate::SchedulerBuilder::provide).
///
/// `Dep<T>` derefs to `T`. `T` may be unsized (`Dep<dyn Notifier>`), which is how
/// tests swap a real service for a fake: the task names the trait object, the
/// application provides the real implementation and the test a fake one.
pub struct Dep<T: ?Sized>(Arc<T>);

impl<T: ?Sized> Dep<T> {
    /// Wraps a shared value.
    pub fn new(value: Arc<T>) -> Self {
        Dep(value)
    }

    /// The shared value.
    pub fn into_inner(self) -> Arc<T> {
        self.0
    }
}

impl<T: ?Sized> Clone for Dep<T> {
    fn clone(&self) -> Self {
        Dep(Arc::clone(&self.0))
    }
}

impl<T: ?Sized> Deref for Dep<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Dep<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// Identifies a dependency type: used to check at start-up that every task's
/// dependencies were provided.
#[derive(Clone, Copy, Debug)]
pub struct DependencyKey {
    /// The type's id.
    pub type_id: TypeId,
    /// The type's name, for messages.
    pub type_name: &'static str,
}

impl DependencyKey {
    /// The key of `T`.
    pub fn of<T: ?Sized + 'static>() -> Self {
        DependencyKey {
            type_id: TypeId::of::<T>(),
            type_name: std::any::type_name::<T>(),
        }
    }
}

/// The set of provided dependencies, shared by a scheduler and its workers.
///
/// Overrides take effect for every job that starts afterwards.
#[derive(Clone, Default)]
pub struct Dependencies {
    map: Arc<RwLock<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>>,
}

impl fmt::Debug for Dependencies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = self.map.read().map(|m| m.len()).unwrap_or(0);
        f.debug_struct("Dependencies").field("len", &len).finish()
    }
}

impl Dependencies {
    /// Provides (or replaces) the value of `T`.
    pub fn insert<T: Send + Sync + 'static>(&self, value: T) {
        self.insert_arc::<T>(Arc::new(value));
    }

    /// Provides (or replaces) a shared value of `T`, which may be unsized
    /// (`Arc<dyn Trait>`).
    pub fn insert_arc<T: ?Sized + Send + Sync + 'static>(&self, value: Arc<T>) {
        let boxed: Arc<dyn Any + Send + Sync> = Arc::new(value);
        if let Ok(mut map) = self.map.write() {
            map.insert(TypeId::of::<T>(), boxed);
        }
    }

    /// The value of `T`, if it was provided.
    pub fn get<T: ?Sized + Send + Sync + 'static>(&self) -> Option<Dep<T>> {
        let map = self.map.read().ok()?;
        let any = map.get(&TypeId::of::<T>())?;
        any.downcast_ref::<Arc<T>>().map(|arc| Dep(Arc::clone(arc)))
    }

    /// Whether a value with this key was provided.
    pub fn contains(&self, key: &DependencyKey) -> bool {
        self.map
            .read()
            .map(|m| m.contains_key(&key.type_id))
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    trait Greeter: Send + Sync {
        fn greet(&self) -> String;
    }
    struct Real;
    impl Greeter for Real {
        fn greet(&self) -> String {
            "real".into()
        }
    }
    struct Fake;
    impl Greeter for Fake {
        fn greet(&self) -> String {
            "fake".into()
        }
    }

    #[test]
    fn trait_objects_can_be_overridden() {
        let deps = Dependencies::default();
        deps.insert_arc::<dyn Greeter>(Arc::new(Real));
        assert_eq!(
            deps.get::<dyn Greeter>().map(|g| g.greet()),
            Some("real".into())
        );
        deps.insert_arc::<dyn Greeter>(Arc::new(Fake));
        assert_eq!(
            deps.get::<dyn Greeter>().map(|g| g.greet()),
            Some("fake".into())
        );
        assert!(deps.contains(&DependencyKey::of::<dyn Greeter>()));
        assert!(!deps.contains(&DependencyKey::of::<u32>()));
    }

    #[test]
    fn sized_values() {
        let deps = Dependencies::default();
        deps.insert(41_u32);
        assert_eq!(deps.get::<u32>().map(|v| *v), Some(41));
        assert!(deps.get::<u64>().is_none());
    }
}
