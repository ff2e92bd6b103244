//! Glob imports of the runtime (and of `__private`) clash with nothing.
#![allow(unused_imports)]

use scheduler::__private::*;
use scheduler::*;

#[task]
async fn globbed(ctx: JobContext, id: u64) -> Result<u64, TaskError> {
    let _ = ctx.job_id();
    Ok(id)
}

fn main() {
    let _ = globbed::job(1);
}
