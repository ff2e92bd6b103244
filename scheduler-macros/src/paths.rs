//! Every absolute path the expansion uses, written once.
//!
//! Paths into the runtime start at the crate root (`::scheduler` or the
//! `crate = path` option); everything else goes through `::core` / `::std`, so a
//! user module that shadows `Result`, `Option`, `Box` or `Vec` changes nothing.

use proc_macro2::TokenStream;
use quote::quote;

/// The paths of one expansion.
pub(crate) struct Paths {
    root: TokenStream,
}

impl Paths {
    /// Paths into the runtime crate at `root` (`::scheduler` when `None`).
    pub(crate) fn new(root: Option<&syn::Path>) -> Self {
        let root = match root {
            Some(path) => quote!(#path),
            None => quote!(::scheduler),
        };
        Paths { root }
    }

    /// The runtime crate root, as written in `#[serde(crate = "...")]`.
    pub(crate) fn serde_crate_string(&self) -> String {
        let root = &self.root;
        quote!(#root::__private::serde).to_string().replace(' ', "")
    }

    pub(crate) fn task(&self) -> TokenStream {
        let root = &self.root;
        quote!(#root::Task)
    }

    pub(crate) fn task_options(&self) -> TokenStream {
        let root = &self.root;
        quote!(#root::TaskOptions)
    }

    pub(crate) fn rate(&self) -> TokenStream {
        let root = &self.root;
        quote!(#root::Rate)
    }

    pub(crate) fn task_registration(&self) -> TokenStream {
        let root = &self.root;
        quote!(#root::TaskRegistration)
    }

    pub(crate) fn task_future(&self) -> TokenStream {
        let root = &self.root;
        quote!(#root::TaskFuture)
    }

    pub(crate) fn task_error(&self) -> TokenStream {
        let root = &self.root;
        quote!(#root::TaskError)
    }

    pub(crate) fn location(&self) -> TokenStream {
        let root = &self.root;
        quote!(#root::Location)
    }

    pub(crate) fn schedule_spec(&self) -> TokenStream {
        let root = &self.root;
        quote!(#root::ScheduleSpec)
    }

    pub(crate) fn dependency_key(&self) -> TokenStream {
        let root = &self.root;
        quote!(#root::DependencyKey)
    }

    pub(crate) fn job_request(&self) -> TokenStream {
        let root = &self.root;
        quote!(#root::JobRequest)
    }

    pub(crate) fn job_context(&self) -> TokenStream {
        let root = &self.root;
        quote!(#root::JobContext)
    }

    pub(crate) fn scheduler(&self) -> TokenStream {
        let root = &self.root;
        quote!(#root::Scheduler)
    }

    pub(crate) fn error(&self) -> TokenStream {
        let root = &self.root;
        quote!(#root::Error)
    }

    pub(crate) fn enqueue_outcome(&self) -> TokenStream {
        let root = &self.root;
        quote!(#root::EnqueueOutcome)
    }

    pub(crate) fn replace_outcome(&self) -> TokenStream {
        let root = &self.root;
        quote!(#root::ReplaceOutcome)
    }

    pub(crate) fn cancel_outcome(&self) -> TokenStream {
        let root = &self.root;
        quote!(#root::CancelOutcome)
    }

    pub(crate) fn job_result(&self) -> TokenStream {
        let root = &self.root;
        quote!(#root::JobResult)
    }

    pub(crate) fn deserialize_owned(&self) -> TokenStream {
        let root = &self.root;
        quote!(#root::__private::serde::de::DeserializeOwned)
    }

    pub(crate) fn job_status(&self) -> TokenStream {
        let root = &self.root;
        quote!(#root::JobStatus)
    }

    pub(crate) fn if_running(&self) -> TokenStream {
        let root = &self.root;
        quote!(#root::IfRunning)
    }

    pub(crate) fn task_result_trait(&self) -> TokenStream {
        let root = &self.root;
        quote!(#root::IntoTaskResult)
    }

    /// `DateTime<Utc>`, through the runtime's re-export of chrono.
    pub(crate) fn date_time_utc(&self) -> TokenStream {
        let root = &self.root;
        quote!(#root::chrono::DateTime<#root::chrono::Utc>)
    }

    pub(crate) fn private(&self) -> TokenStream {
        let root = &self.root;
        quote!(#root::__private)
    }

    pub(crate) fn serde(&self) -> TokenStream {
        let root = &self.root;
        quote!(#root::__private::serde)
    }

    pub(crate) fn inventory(&self) -> TokenStream {
        let root = &self.root;
        quote!(#root::__private::inventory)
    }

    pub(crate) fn result() -> TokenStream {
        quote!(::core::result::Result)
    }

    pub(crate) fn option() -> TokenStream {
        quote!(::core::option::Option)
    }

    pub(crate) fn boxed() -> TokenStream {
        quote!(::std::boxed::Box)
    }

    pub(crate) fn vec() -> TokenStream {
        quote!(::std::vec::Vec)
    }

    pub(crate) fn str() -> TokenStream {
        quote!(::core::primitive::str)
    }

    pub(crate) fn string() -> TokenStream {
        quote!(::std::string::String)
    }

    pub(crate) fn duration() -> TokenStream {
        quote!(::core::time::Duration)
    }

    pub(crate) fn send() -> TokenStream {
        quote!(::core::marker::Send)
    }

    pub(crate) fn future() -> TokenStream {
        quote!(::core::future::Future)
    }
}
