//! The `#[task]` attribute of the `scheduler` crate. Use it through `scheduler::task`.

use proc_macro::TokenStream;

/// Placeholder: replaced by the real expansion.
#[proc_macro_attribute]
pub fn task(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}
