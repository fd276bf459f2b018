//! Runs one test on a thread of its own, in its own actix system.

use std::future::Future;

use super::{StoreFactory, Verdict};

/// Runs `body` with a clone of `factory` on a new thread, in a new actix
/// system (so a test may pause tokio's clock, and whatever it leaves
/// running ends with it), and waits for it without blocking the caller's
/// runtime. A panic in the test is resumed here, so the caller's test
/// fails with the test's own message.
pub(super) async fn isolated<F, Fut>(name: &'static str, factory: &F, body: fn(F) -> Fut) -> Verdict
where
    F: StoreFactory,
    Fut: Future<Output = Verdict> + 'static,
{
    let factory = factory.clone();
    let (done, verdict) = futures::channel::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name(format!("kessel-conformance-{name}"))
        .spawn(move || {
            let system = actix_rt::System::new();
            let verdict = system.block_on(body(factory));
            let _ = done.send(verdict);
        })
        .unwrap_or_else(|e| panic!("cannot start a thread for conformance test {name}: {e}"));
    let verdict = verdict.await;
    match thread.join() {
        Err(panic) => std::panic::resume_unwind(panic),
        Ok(()) => {
            verdict.unwrap_or_else(|_| panic!("conformance test {name} ended without a verdict"))
        }
    }
}

/// Defines a public test that runs `body` isolated.
macro_rules! conformance_test {
    ($module:ident, $(#[$doc:meta])* $name:ident => $body:ident) => {
        $(#[$doc])*
        ///
        /// # Panics
        ///
        /// When a check fails, with what was expected.
        ///
        /// # Examples
        ///
        /// ```
        /// # #[actix_rt::main] async fn main() {
        /// use std::sync::Arc;
        /// use kessel::store::{MemoryStore, Store};
        /// let factory = || async { Arc::new(MemoryStore::new()) as Arc<dyn Store> };
        #[doc = concat!(
            "let verdict = kessel::conformance::", stringify!($module), "::", stringify!($name), "(&factory).await;"
        )]
        /// # let _ = verdict;
        /// # }
        /// ```
        pub async fn $name<F: $crate::conformance::StoreFactory>(factory: &F) -> $crate::conformance::Verdict {
            $crate::conformance::harness::isolated(stringify!($name), factory, $body::<F>).await
        }
    };
}

pub(super) use conformance_test;
