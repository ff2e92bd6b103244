//! What `#[task]` emits when the function or the options are wrong: the function
//! unchanged, stubs of the generated items with the right signatures, and the
//! errors. One mistake gives one diagnostic, and the IDE keeps completing.

use proc_macro2::TokenStream;
use quote::quote;

use crate::args::TaskArgs;
use crate::expand::{helpers, task_struct, Bodies};
use crate::model::TaskFn;
use crate::paths::Paths;

/// The function, stubs and errors. `model` holds the parameters that passed
/// their checks.
pub(crate) fn fallback(model: &TaskFn<'_>, args: &TaskArgs, errors: syn::Error) -> TokenStream {
    let item = model.item;
    let errors = errors.to_compile_error();
    if model.item.sig.receiver().is_some() {
        // A method: the function stays where it is; a struct cannot go in an `impl`.
        return quote!(#item #errors);
    }
    let paths = Paths::new(args.krate.as_ref().map(|(_, path)| path));
    let ident = model.ident;
    let task = paths.task();
    let task_options = paths.task_options();
    let registration = paths.task_registration();
    let task_struct = task_struct(model);
    let helpers = helpers(model, &paths, Bodies::Stub);
    quote! {
        #item
        #task_struct
        const _: () = {
            #helpers
            impl #task for #ident {
                const NAME: &'static ::core::primitive::str = "";
                const OPTIONS: #task_options = #task_options::DEFAULT;
                type Args = ();
                type Output = ();
                fn registration() -> &'static #registration {
                    ::core::unreachable!()
                }
            }
        };
        #errors
    }
}

/// The item is not a function at all: emit it unchanged with the error.
pub(crate) fn not_a_function(item: TokenStream, error: syn::Error) -> TokenStream {
    let error = error.to_compile_error();
    quote!(#item #error)
}
