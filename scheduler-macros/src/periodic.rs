//! `#[task(cron = ...)]`: the checks that need both the options and the
//! function, and the schedule written into the registration.

use proc_macro2::TokenStream;
use quote::quote;

use crate::args::TaskArgs;
use crate::model::TaskFn;
use crate::paths::Paths;

/// A periodic task takes no stored arguments: each run is started by its
/// schedule, with nothing to store. One error per such parameter.
pub(crate) fn check(model: &TaskFn<'_>, args: &TaskArgs) -> Option<syn::Error> {
    args.cron.as_ref()?;
    model
        .payload()
        .map(|(ident, ty)| {
            syn::Error::new_spanned(
                quote!(#ident: #ty),
                format!(
                    "a periodic task (`cron = ...`) cannot take `{ident}`: its schedule starts each run, with no arguments to store; take only `Dep<T>` and `JobContext`, or remove `cron`"
                ),
            )
        })
        .reduce(|mut all, error| {
            all.combine(error);
            all
        })
}

/// The registration's `schedule` field: `Some(ScheduleSpec { .. })` for a
/// periodic task, `None` otherwise.
pub(crate) fn registration_field(args: &TaskArgs, paths: &Paths) -> TokenStream {
    let option = Paths::option();
    let Some((_, expression)) = &args.cron else {
        return quote!(#option::None);
    };
    let zone = args.tz.as_ref().map_or("UTC", |(_, zone)| zone.as_str());
    let missed = args
        .missed
        .as_ref()
        .map_or("skip", |(_, missed)| missed.as_str());
    let spec = paths.schedule_spec();
    quote! {
        #option::Some(#spec {
            expression: #expression,
            zone: #zone,
            missed: #missed,
        })
    }
}
