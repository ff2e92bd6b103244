//! The validated task function: borrows the syn nodes so every error and every
//! generated item keeps the user's spans.

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, Ident, ItemFn, Pat, PathArguments, Type, Visibility};

/// A task function that passed every check.
pub(crate) struct TaskFn<'a> {
    /// The function as the user wrote it.
    pub(crate) item: &'a ItemFn,
    /// Its name: also the name of the generated struct.
    pub(crate) ident: &'a Ident,
    /// Its visibility: also the generated items'.
    pub(crate) vis: &'a Visibility,
    /// Its parameters, in order.
    pub(crate) params: Vec<Param<'a>>,
    /// Its return type; `None` for `()`.
    pub(crate) output: Option<&'a Type>,
}

/// One parameter of the task function.
pub(crate) struct Param<'a> {
    /// What the parameter receives.
    pub(crate) kind: ParamKind<'a>,
    /// Its type as written.
    pub(crate) ty: &'a Type,
}

/// Where a parameter's value comes from when the job runs.
pub(crate) enum ParamKind<'a> {
    /// `Dep<T>`: resolved from the scheduler's dependencies.
    Dep(&'a Type),
    /// `JobContext`: the running job's context.
    Context,
    /// Anything else: a field of the stored arguments.
    Payload(&'a Ident),
}

impl<'a> TaskFn<'a> {
    /// Checks the function: the model of the parameters that passed their checks,
    /// and every problem at once. The fallback uses the partial model to emit
    /// stubs with the right signatures.
    pub(crate) fn lenient(item: &'a ItemFn) -> (Self, Option<syn::Error>) {
        let mut errors: Option<syn::Error> = None;
        let mut push = |error: syn::Error| match &mut errors {
            Some(existing) => existing.combine(error),
            None => errors = Some(error),
        };
        let sig = &item.sig;
        if sig.asyncness.is_none() {
            push(syn::Error::new(
                sig.fn_token.span,
                "a task must be an `async fn`: write `async fn` here",
            ));
        }
        if let Some(unsafety) = &sig.unsafety {
            push(syn::Error::new(
                unsafety.span,
                "a task cannot be `unsafe`: remove `unsafe`",
            ));
        }
        if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
            push(syn::Error::new_spanned(
                &sig.generics,
                "a task cannot be generic: its arguments are decoded from a stored job and need one concrete type; remove the generic parameters and name the types",
            ));
        }
        let mut params = Vec::new();
        for input in &sig.inputs {
            match input {
                FnArg::Receiver(receiver) => push(syn::Error::new_spanned(
                    receiver,
                    "a task cannot take `self`: make it a free function outside the `impl` block, and pass what it needs as arguments or `Dep<T>`",
                )),
                FnArg::Typed(typed) => match check_param(&typed.pat, &typed.ty) {
                    Ok(param) => params.push(param),
                    Err(error) => push(error),
                },
            }
        }
        let output = match &sig.output {
            syn::ReturnType::Default => None,
            syn::ReturnType::Type(_, ty) => Some(&**ty),
        };
        if let Some(ty) = output {
            if let Some(span) = find_impl_trait(ty) {
                push(syn::Error::new(
                    span,
                    "a task cannot return `impl Trait`: return `()` or `Result<T, E>` with concrete types",
                ));
            }
        }
        let model = TaskFn {
            item,
            ident: &sig.ident,
            vis: &item.vis,
            params,
            output,
        };
        (model, errors)
    }

    /// The parameters stored in the job, with their names and types.
    pub(crate) fn payload(&self) -> impl Iterator<Item = (&'a Ident, &'a Type)> + '_ {
        self.params.iter().filter_map(|p| match p.kind {
            ParamKind::Payload(ident) => Some((ident, p.ty)),
            _ => None,
        })
    }
}

/// Classifies one parameter, or says what to write instead.
fn check_param<'a>(pat: &'a Pat, ty: &'a Type) -> syn::Result<Param<'a>> {
    if let Some(span) = find_impl_trait(ty) {
        return Err(syn::Error::new(
            span,
            "a task argument cannot be `impl Trait`: its value is decoded from a stored job, so name a concrete type",
        ));
    }
    let ty_inner = ungroup(ty);
    if let Type::Reference(reference) = ty_inner {
        let instead = match ungroup(&reference.elem) {
            Type::Path(p) if p.qself.is_none() && p.path.is_ident("str") => "`String`".to_string(),
            Type::Slice(slice) => {
                let elem = &slice.elem;
                format!(
                    "`Vec<{}>`",
                    quote::quote!(#elem).to_string().replace(' ', "")
                )
            }
            other => format!("`{}`", quote::quote!(#other).to_string().replace(' ', "")),
        };
        return Err(syn::Error::new_spanned(
            reference,
            format!("a task argument cannot be a reference: it is stored in the job and decoded when the job runs; take an owned value such as {instead}"),
        ));
    }
    if let Some(kind) = injected_kind(ty_inner)? {
        return Ok(Param { kind, ty });
    }
    match pat {
        Pat::Ident(pat_ident) if pat_ident.by_ref.is_none() && pat_ident.subpat.is_none() => {
            Ok(Param {
                kind: ParamKind::Payload(&pat_ident.ident),
                ty,
            })
        }
        _ => Err(syn::Error::new_spanned(
            pat,
            format!(
                "a task argument must be a plain name, such as `arg: {}`: the name is how listings and the untyped API show the argument; destructure it inside the function",
                quote::quote!(#ty).to_string().replace(" ,", ",")
            ),
        )),
    }
}

/// `Dep<T>` or `JobContext`, recognised by the last segment of the type's path.
fn injected_kind(ty: &Type) -> syn::Result<Option<ParamKind<'_>>> {
    let Type::Path(path) = ty else {
        return Ok(None);
    };
    if path.qself.is_some() {
        return Ok(None);
    }
    let Some(last) = path.path.segments.last() else {
        return Ok(None);
    };
    if last.ident == "JobContext" {
        return Ok(Some(ParamKind::Context));
    }
    if last.ident != "Dep" {
        return Ok(None);
    }
    if let PathArguments::AngleBracketed(args) = &last.arguments {
        if let [GenericArgument::Type(inner)] = args.args.iter().collect::<Vec<_>>()[..] {
            return Ok(Some(ParamKind::Dep(inner)));
        }
    }
    Err(syn::Error::new(
        last.span(),
        "write the dependency's type: `Dep<YourType>`",
    ))
}

/// Looks through the invisible groups that `macro_rules!` puts around types.
fn ungroup(ty: &Type) -> &Type {
    match ty {
        Type::Group(group) => ungroup(&group.elem),
        Type::Paren(paren) => ungroup(&paren.elem),
        other => other,
    }
}

/// The span of the first `impl` keyword in a type, if any.
fn find_impl_trait(ty: &Type) -> Option<Span> {
    fn walk(tokens: TokenStream) -> Option<Span> {
        tokens.into_iter().find_map(|tree| match tree {
            TokenTree::Ident(ident) if ident == "impl" => Some(ident.span()),
            TokenTree::Group(group) => walk(group.stream()),
            _ => None,
        })
    }
    walk(quote::quote!(#ty))
}
