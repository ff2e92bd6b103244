//! The `#[task]` attribute of the `scheduler` crate. Use it through `scheduler::task`.
//!
//! A small pipeline: [`args`] reads the options, [`model`] checks the function,
//! [`expand`] writes the tokens, [`fallback`] keeps the output usable on error,
//! and [`paths`] holds every absolute path.

use proc_macro::TokenStream;

mod args;
mod expand;
mod fallback;
mod model;
mod paths;

#[doc = include_str!("task.md")]
#[proc_macro_attribute]
pub fn task(args: TokenStream, item: TokenStream) -> TokenStream {
    task_impl(args.into(), item.into()).into()
}

/// The whole macro on `proc_macro2` tokens, so unit tests can call it.
fn task_impl(
    args: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    let (args, arg_errors) = args::TaskArgs::parse(args);
    let function: syn::ItemFn = match syn::parse2(item.clone()) {
        Ok(function) => function,
        Err(_) => {
            let error = syn::Error::new(
                proc_macro2::Span::call_site(),
                "`#[task]` goes on an `async fn`: write `#[task] async fn name(args..) { .. }`",
            );
            return fallback::not_a_function(item, error);
        }
    };
    let (model, fn_errors) = model::TaskFn::lenient(&function);
    match (fn_errors, arg_errors) {
        (None, None) => expand::expand(&model, &args),
        (Some(mut errors), Some(more)) => {
            errors.combine(more);
            fallback::fallback(&model, &args, errors)
        }
        (Some(errors), None) => fallback::fallback(&model, &args, errors),
        // The function is fine: expand it with the options that parsed, plus the
        // errors, so only the option is reported.
        (None, Some(errors)) => {
            let mut tokens = expand::expand(&model, &args);
            tokens.extend(errors.to_compile_error());
            tokens
        }
    }
}
