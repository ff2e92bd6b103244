//! The `#[task]` attribute of the `scheduler` crate. Use it through `scheduler::task`.
//!
//! A small pipeline: `args` reads the options, `model` checks the function,
//! `periodic` checks a `cron` task against its function, `expand` writes the
//! tokens, `fallback` keeps the output usable on error, and `paths` holds every
//! absolute path. `syntax` is a byte-for-byte copy of the runtime's parsers of
//! cron expressions, zones and missed-tick policies.

use proc_macro::TokenStream;

mod args;
mod expand;
mod fallback;
mod model;
mod paths;
mod periodic;
mod syntax;

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
    let arg_errors = match (arg_errors, periodic::check(&model, &args)) {
        (Some(mut errors), Some(more)) => {
            errors.combine(more);
            Some(errors)
        }
        (errors, more) => errors.or(more),
    };
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

#[cfg(test)]
mod tests {
    use proc_macro2::TokenStream;
    use quote::quote;

    /// Whether the tokens use a path through a crate named `scheduler` (the
    /// helpers' `scheduler` parameter is not a path).
    fn mentions_scheduler(tokens: TokenStream) -> bool {
        let text = tokens.to_string();
        text.contains("scheduler ::") || text.contains("\"scheduler::")
    }

    #[test]
    fn crate_option_replaces_every_runtime_path() {
        let item = quote!(
            async fn f(d: Dep<Foo>, ctx: JobContext, x: u8) -> Result<u8, String> {
                Ok(x)
            }
        );
        let default = super::task_impl(quote!(), item.clone());
        assert!(mentions_scheduler(default));
        let renamed = super::task_impl(quote!(crate = my_sched), item.clone());
        assert!(!mentions_scheduler(renamed.clone()));
        assert!(renamed
            .to_string()
            .contains("\"my_sched::__private::serde\""));
        // The fallback too (an option error keeps the expansion).
        let fallback = super::task_impl(quote!(crate = my_sched, timeout = "x"), item);
        assert!(!mentions_scheduler(fallback.clone()));
        assert!(fallback.to_string().contains("compile_error"));
    }

    #[test]
    fn fallback_keeps_the_function_and_stubs_the_helpers() {
        let out = super::task_impl(
            quote!(),
            quote!(
                fn f(x: u8, y: &str) {}
            ),
        );
        let text = out.to_string();
        assert!(text.contains("fn f (x : u8 , y : & str)"), "{text}");
        assert!(text.contains("struct f { }"), "{text}");
        assert!(text.contains("fn job (x : u8)"), "{text}");
        assert_eq!(text.matches("compile_error").count(), 2, "{text}");
    }
}
