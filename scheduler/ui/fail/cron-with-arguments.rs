use scheduler::{task, Dep, JobContext};

pub struct Reports;

#[task(cron = "0 9 * * *")]
async fn report(reports: Dep<Reports>, ctx: JobContext, day: String) {
    let _ = (reports, ctx, day);
}

fn main() {}
