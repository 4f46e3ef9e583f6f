//! Containing panics in result streams: a bug met while producing one batch (often a reader's, on
//! a malformed file) ends that stream with an error; the server and its other streams carry on.

use futures::{Stream, StreamExt};

/// `batches`, ending with `on_panic(message)` if producing an item panics.
pub fn contain_panics<S, T, E>(
    batches: S,
    on_panic: impl Fn(String) -> E + Send + 'static,
) -> impl Stream<Item = Result<T, E>> + Send + 'static
where
    S: Stream<Item = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    std::panic::AssertUnwindSafe(batches).catch_unwind().scan(false, move |panicked, item| {
        let item = match item {
            _ if *panicked => None,
            Ok(item) => Some(item),
            Err(panic) => {
                *panicked = true;
                Some(Err(on_panic(panic_message(panic.as_ref()))))
            }
        };
        futures::future::ready(item)
    })
}

/// The text a panic was raised with.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".to_string())
}
