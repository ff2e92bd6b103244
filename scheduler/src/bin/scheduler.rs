//! `scheduler`: the operator's command line (feature `cli`). It reads and
//! steers the jobs of one namespace through the library's own API, the same
//! calls the dashboard makes, so the two never disagree.
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379/0 scheduler --namespace app stats
//! scheduler list --state deferred --task send_reminder --limit 20
//! scheduler show reminder-42 --json
//! scheduler reschedule reminder-42 --in 30m
//! ```
//!
//! Exit codes: 0 done; 1 Redis unreachable or another failure; 2 a usage
//! error (clap's); 3 no such job (or nothing to do); 4 refused (a bad id,
//! time or cursor; a running job that cannot be rescheduled).

// A command-line tool's output is its standard output.
#![allow(clippy::print_stdout)]

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use scheduler::{
    CancelOutcome, Error, FinishedState, JobInfo, JobQuery, JobStatus, ListState, Rescheduled,
    Scheduler, When,
};
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "scheduler",
    version,
    about = "Inspect and steer the jobs of a scheduler namespace on Redis"
)]
struct Cli {
    /// The Redis URL.
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379/0",
        global = true
    )]
    url: String,
    /// The namespace the application uses (`SchedulerBuilder::namespace`).
    #[arg(
        long,
        env = "SCHEDULER_NAMESPACE",
        default_value = "scheduler",
        global = true
    )]
    namespace: String,
    /// The namespace's number of shards (`SchedulerBuilder::shards`); every
    /// process of a namespace must give the same.
    #[arg(
        long,
        env = "SCHEDULER_SHARDS",
        default_value_t = 1,
        value_parser = clap::value_parser!(u16).range(1..),
        global = true
    )]
    shards: u16,
    /// While the namespace changes its number of shards, the old number
    /// (`SchedulerBuilder::draining_from`): jobs still in the old layout are
    /// found, listed and counted too.
    #[arg(
        long,
        env = "SCHEDULER_DRAINING_FROM",
        value_parser = clap::value_parser!(u16).range(1..),
        global = true
    )]
    draining_from: Option<u16>,
    /// Print JSON (one object, or one line per refresh for `watch`).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// How many jobs are deferred, queued, running and dead-lettered.
    Stats,
    /// Each queue: its deferred, queued and waiting jobs, and the live
    /// workers that serve it.
    Queues,
    /// One page of the jobs in a state.
    List {
        /// deferred, queued, running, finished or dead.
        #[arg(long, default_value = "deferred")]
        state: String,
        /// Only jobs of this task.
        #[arg(long)]
        task: Option<String>,
        /// Finished jobs only: completed, failed or cancelled.
        #[arg(long)]
        outcome: Option<String>,
        /// At most this many jobs.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Go on from the cursor a previous page printed.
        #[arg(long)]
        cursor: Option<String>,
        /// Only jobs of this queue (not with `--state finished`: an outcome
        /// does not keep its queue).
        #[arg(long)]
        queue: Option<String>,
    },
    /// Everything known about one job.
    Show {
        /// The job id.
        id: String,
    },
    /// Cancels a job (a running one is asked to stop).
    Cancel {
        /// The job id.
        id: String,
    },
    /// Moves a deferred or queued job to another time.
    Reschedule {
        /// The job id.
        id: String,
        /// The new time, RFC 3339 (2026-12-01T09:00:00Z).
        #[arg(long, conflicts_with = "in", required_unless_present = "in")]
        at: Option<String>,
        /// The new time from now: 30s, 10m, 2h, 1day.
        #[arg(long = "in")]
        r#in: Option<String>,
    },
    /// Puts a dead-lettered job back in the queue (or every one).
    Requeue {
        /// The job id.
        #[arg(required_unless_present = "all_dead", conflicts_with = "all_dead")]
        id: Option<String>,
        /// Every dead-lettered job.
        #[arg(long)]
        all_dead: bool,
    },
    /// Empties the dead letter.
    PurgeDead,
    /// The periodic schedules.
    Schedules,
    /// A live view of the counts, the next deferred jobs and the running ones.
    Watch {
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 2.0)]
        interval: f64,
        /// Jobs shown per list.
        #[arg(long, default_value_t = 10)]
        limit: usize,
        /// Stop after this many refreshes (0: until interrupted).
        #[arg(long, default_value_t = 0, hide = true)]
        refreshes: u64,
    },
}

/// What the command ends with: its exit code and the line to print on
/// stderr, if any.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let code = match e {
            Error::InvalidJobId { .. }
            | Error::InvalidCursor(_)
            | Error::InvalidQuery(_)
            | Error::InvalidQueue { .. }
            | Error::InvalidRunTime(_) => 4,
            _ => 1,
        };
        Failure::new(code, e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(Failure::new(1, format!("cannot start the runtime: {e}"))),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => fail(failure),
    }
}

fn fail(failure: Failure) -> ExitCode {
    eprintln!("scheduler: {}", failure.message);
    ExitCode::from(failure.code)
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let builder = Scheduler::builder(cli.url.as_str())
        .namespace(&cli.namespace)
        .shards(cli.shards);
    let builder = match cli.draining_from {
        Some(old) => builder.draining_from(old),
        None => builder,
    };
    let s = builder.producer_only().start().await?;
    let result = command(&s, &cli).await;
    s.close().await;
    result
}

async fn command(s: &Scheduler, cli: &Cli) -> Result<(), Failure> {
    let json = cli.json;
    match &cli.command {
        Command::Stats => {
            let c = s.counts().await?;
            if json {
                print_json(
                    &json!({"deferred": c.deferred, "queued": c.queued, "running": c.running, "dead_lettered": c.dead_lettered}),
                );
            } else {
                println!("deferred       {}", c.deferred);
                println!("queued         {}", c.queued);
                println!("running        {}", c.running);
                println!("dead-lettered  {}", c.dead_lettered);
            }
        }
        Command::Queues => {
            let queues = s.queues().await?;
            if json {
                let rows: Vec<_> = queues
                    .iter()
                    .map(|q| json!({"queue": q.name, "deferred": q.deferred, "queued": q.queued, "waiting": q.waiting, "workers": q.workers}))
                    .collect();
                print_json(&json!({ "queues": rows }));
            } else {
                println!(
                    "{:<24} {:>9} {:>9} {:>9} {:>8}",
                    "QUEUE", "DEFERRED", "QUEUED", "WAITING", "WORKERS"
                );
                for q in &queues {
                    println!(
                        "{:<24} {:>9} {:>9} {:>9} {:>8}",
                        q.name, q.deferred, q.queued, q.waiting, q.workers
                    );
                }
            }
        }
        Command::List {
            state,
            task,
            outcome,
            limit,
            cursor,
            queue,
        } => {
            let state = ListState::parse(state).ok_or_else(|| {
                Failure::new(
                    4,
                    format!("unknown state {state:?}: deferred, queued, running, finished or dead"),
                )
            })?;
            let mut query = JobQuery::new(state).limit(*limit);
            if let Some(task) = task {
                query = query.task(task.as_str());
            }
            if let Some(queue) = queue {
                query = query.queue(queue.as_str());
            }
            if let Some(outcome) = outcome {
                let outcome = FinishedState::parse(outcome).ok_or_else(|| {
                    Failure::new(
                        4,
                        format!("unknown outcome {outcome:?}: completed, failed or cancelled"),
                    )
                })?;
                query = query.outcome(outcome);
            }
            if let Some(cursor) = cursor {
                query = query.after(cursor.as_str());
            }
            let page = s.list(&query).await?;
            if json {
                print_json(&json!({
                    "jobs": page.jobs.iter().map(job_json).collect::<Vec<_>>(),
                    "unreadable": page.unreadable,
                    "next": page.next,
                }));
            } else {
                print_table(&page.jobs);
                for id in &page.unreadable {
                    println!("{id}: unreadable record (see `scheduler show {id}`)");
                }
                if let Some(next) = &page.next {
                    println!("more: --cursor '{next}'");
                }
            }
        }
        Command::Show { id } => {
            let info = s.info(id).await?.ok_or_else(|| {
                Failure::new(
                    3,
                    format!("no job {id:?} (never enqueued, or its outcome expired)"),
                )
            })?;
            if json {
                print_json(&job_json(&info));
            } else {
                print_detail(&info);
            }
        }
        Command::Cancel { id } => {
            let outcome = s.cancel(id).await?;
            let (code, text) = match &outcome {
                CancelOutcome::Removed { generation } => (
                    0,
                    format!("cancelled {id} (generation {generation}): it will not run"),
                ),
                CancelOutcome::AbortSignalled { generation, .. } => (
                    0,
                    format!("{id} (generation {generation}) is running: asked to stop"),
                ),
                CancelOutcome::NotFound => (3, format!("no job {id:?} to cancel")),
                CancelOutcome::AlreadyFinished(state) => {
                    (3, format!("{id} already ended ({})", state.as_str()))
                }
            };
            if json {
                print_json(&json!({"job_id": id, "outcome": format!("{outcome:?}")}));
            } else {
                println!("{text}");
            }
            if code != 0 {
                return Err(Failure::new(code, text));
            }
        }
        Command::Reschedule { id, at, r#in } => {
            let when = match (at, r#in) {
                (Some(at), _) => When::At(parse_time(at)?),
                (None, Some(after)) => When::After(parse_duration(after)?),
                (None, None) => return Err(Failure::new(4, "give --at or --in")),
            };
            match s.reschedule(id, when).await? {
                Rescheduled::Moved { generation, run_at } => {
                    if json {
                        print_json(
                            &json!({"job_id": id, "generation": generation, "run_at": run_at}),
                        );
                    } else {
                        println!("{id} (generation {generation}) now runs at {run_at}");
                    }
                }
                Rescheduled::Running { generation } => {
                    return Err(Failure::new(
                        4,
                        format!("{id} (generation {generation}) is running: it cannot be moved"),
                    ))
                }
                Rescheduled::NotFound => {
                    return Err(Failure::new(3, format!("no deferred or queued job {id:?}")))
                }
                other => return Err(Failure::new(1, format!("{id}: {other:?}"))),
            }
        }
        Command::Requeue { id, all_dead } => {
            let ids: Vec<String> = match (id, all_dead) {
                (Some(id), _) => vec![id.clone()],
                (None, true) => {
                    let mut all = Vec::new();
                    loop {
                        let page = s.dead_letters(all.len(), 500).await?;
                        if page.is_empty() {
                            break;
                        }
                        all.extend(page.into_iter().map(|d| d.job_id));
                    }
                    all
                }
                (None, false) => return Err(Failure::new(4, "give a job id or --all-dead")),
            };
            let mut requeued = Vec::new();
            let mut missing = Vec::new();
            for id in &ids {
                match s.requeue_dead_letter(id).await? {
                    Some(generation) => {
                        requeued.push(json!({"job_id": id, "generation": generation}))
                    }
                    None => missing.push(id.clone()),
                }
            }
            if json {
                print_json(&json!({"requeued": requeued, "not_requeued": missing}));
            } else {
                for r in &requeued {
                    println!(
                        "requeued {} (generation {})",
                        r["job_id"].as_str().unwrap_or(""),
                        r["generation"]
                    );
                }
                for id in &missing {
                    println!("{id}: not in the dead letter, or pending under its id");
                }
            }
            if requeued.is_empty() {
                return Err(Failure::new(
                    3,
                    if ids.is_empty() {
                        "the dead letter is empty".to_string()
                    } else {
                        format!("nothing requeued: {}", missing.join(", "))
                    },
                ));
            }
        }
        Command::PurgeDead => {
            let n = s.purge_dead_letters().await?;
            if json {
                print_json(&json!({"purged": n}));
            } else {
                println!("purged {n} dead-lettered jobs");
            }
        }
        Command::Schedules => {
            let schedules = s.schedules().await?;
            if json {
                print_json(&json!(schedules
                    .iter()
                    .map(|sc| json!({
                        "name": sc.name,
                        "task": sc.task,
                        "expression": sc.expression,
                        "zone": sc.zone,
                        "paused": sc.paused,
                        "next_runs": sc.next_runs,
                    }))
                    .collect::<Vec<_>>()));
            } else if schedules.is_empty() {
                println!("no schedules");
            } else {
                for sc in &schedules {
                    let next = sc
                        .next_runs
                        .first()
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_else(|| "-".into());
                    let paused = if sc.paused { "  (paused)" } else { "" };
                    println!(
                        "{:<24} {:<24} {:<20} {:<16} next {next}{paused}",
                        sc.name, sc.task, sc.expression, sc.zone
                    );
                }
            }
        }
        Command::Watch {
            interval,
            limit,
            refreshes,
        } => {
            watch(
                s,
                json,
                Duration::from_secs_f64(interval.max(0.1)),
                *limit,
                *refreshes,
            )
            .await?
        }
    }
    Ok(())
}

async fn watch(
    s: &Scheduler,
    json: bool,
    every: Duration,
    limit: usize,
    refreshes: u64,
) -> Result<(), Failure> {
    let mut n = 0;
    loop {
        let counts = s.counts().await?;
        let next = s
            .list(&JobQuery::new(ListState::Deferred).limit(limit))
            .await?;
        let running = s
            .list(&JobQuery::new(ListState::Running).limit(limit))
            .await?;
        if json {
            print_json(&json!({
                "at": Utc::now(),
                "counts": {"deferred": counts.deferred, "queued": counts.queued, "running": counts.running, "dead_lettered": counts.dead_lettered},
                "next": next.jobs.iter().map(job_json).collect::<Vec<_>>(),
                "running": running.jobs.iter().map(job_json).collect::<Vec<_>>(),
            }));
        } else {
            // Clears the screen and redraws in place.
            print!("\x1b[2J\x1b[H");
            println!(
                "{}  deferred {}  queued {}  running {}  dead-lettered {}",
                Utc::now().format("%H:%M:%S"),
                counts.deferred,
                counts.queued,
                counts.running,
                counts.dead_lettered
            );
            println!("\nnext deferred");
            print_table(&next.jobs);
            println!("\nrunning");
            print_table(&running.jobs);
        }
        let _ = std::io::stdout().flush();
        n += 1;
        if refreshes > 0 && n >= refreshes {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, Failure> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            Failure::new(
                4,
                format!("bad time {text:?}: {e} (expected RFC 3339, like 2026-12-01T09:00:00Z)"),
            )
        })
}

fn parse_duration(text: &str) -> Result<Duration, Failure> {
    humantime::parse_duration(text)
        .map_err(|e| Failure::new(4, format!("bad duration {text:?}: {e} (like 30s, 10m, 2h)")))
}

fn print_json(value: &serde_json::Value) {
    println!("{value}");
}

/// The state word and the time that goes with it.
fn state_and_time(info: &JobInfo) -> (&'static str, Option<DateTime<Utc>>) {
    match &info.status {
        JobStatus::Deferred { run_at } => ("deferred", Some(*run_at)),
        JobStatus::Queued { run_at } => ("queued", Some(*run_at)),
        JobStatus::Running { .. } => ("running", info.started_at),
        JobStatus::Completed => ("completed", info.finished_at),
        JobStatus::Failed => ("failed", info.finished_at),
        JobStatus::Cancelled => ("cancelled", info.finished_at),
        JobStatus::NotFound => ("unknown", None),
    }
}

fn job_json(info: &JobInfo) -> serde_json::Value {
    let (state, _) = state_and_time(info);
    let worker = match &info.status {
        JobStatus::Running { worker, .. } => Some(worker.clone()),
        _ => None,
    };
    json!({
        "job_id": info.job_id,
        "task": info.task,
        "state": state,
        "generation": info.generation,
        "attempts": info.attempts,
        "max_attempts": info.max_attempts,
        "enqueued_at": info.enqueued_at,
        "run_at": info.run_at,
        "started_at": info.started_at,
        "finished_at": info.finished_at,
        "worker": worker,
        "lease_until": info.lease_until,
        "last_error": info.last_error,
        "result": info.result.as_deref().and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok()),
        "progress": info.progress,
        "args": info.args,
        "queue": info.queue,
        "priority": info.priority,
        "limit_key": info.limit_key,
        "waiting_for": info.waiting.as_ref().map(ToString::to_string),
    })
}

fn print_table(jobs: &[JobInfo]) {
    if jobs.is_empty() {
        println!("(none)");
        return;
    }
    println!(
        "{:<32} {:<20} {:<10} {:<25} {:>8}  ERROR",
        "ID", "TASK", "STATE", "TIME", "ATTEMPTS"
    );
    for info in jobs {
        let (state, time) = state_and_time(info);
        let time = time
            .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
            .unwrap_or_else(|| "-".into());
        let error = info.last_error.as_deref().unwrap_or("").replace('\n', " ");
        println!(
            "{:<32} {:<20} {:<10} {:<25} {:>8}  {}",
            info.job_id,
            info.task,
            state,
            time,
            format!("{}/{}", info.attempts, info.max_attempts),
            error.chars().take(80).collect::<String>()
        );
    }
}

fn print_detail(info: &JobInfo) {
    let (state, _) = state_and_time(info);
    let time = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339()).unwrap_or_else(|| "-".into());
    println!("job          {}", info.job_id);
    println!("task         {}", info.task);
    println!("state        {state}");
    println!("generation   {}", info.generation);
    if let Some(queue) = &info.queue {
        println!("queue        {queue} (priority {})", info.priority);
    }
    if let Some(key) = &info.limit_key {
        println!("limit key    {key}");
    }
    if let Some(waiting) = &info.waiting {
        println!("waiting for  {waiting}");
    }
    println!("attempts     {}/{}", info.attempts, info.max_attempts);
    println!("enqueued at  {}", time(info.enqueued_at));
    println!("run at       {}", time(info.run_at));
    println!("started at   {}", time(info.started_at));
    println!("finished at  {}", time(info.finished_at));
    if let JobStatus::Running { worker, .. } = &info.status {
        println!("worker       {worker}");
        println!("lease until  {}", time(info.lease_until));
    }
    if let Some(args) = &info.args {
        println!("arguments    {args}");
    }
    if let Some(progress) = &info.progress {
        println!("progress     {progress}");
    }
    if let Some(error) = &info.last_error {
        println!("last error   {error}");
    }
    if let Some(result) = &info.result {
        println!("result       {result}");
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
