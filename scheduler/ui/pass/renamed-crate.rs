//! `crate = path` finds the runtime under another name.

extern crate scheduler as my_sched;

use my_sched::{task, Dep};

struct Mailer;

#[task(crate = my_sched, name = "renamed")]
async fn renamed(mailer: Dep<Mailer>, to: String) -> Result<(), String> {
    let _ = (mailer, to);
    Ok(())
}

mod inner {
    // A path through a re-export works too.
    pub(crate) use my_sched as reexported;

    #[crate::task(crate = crate::inner::reexported)]
    pub(crate) async fn through_reexport(n: u8) {
        let _ = n;
    }
}

fn main() {
    let registry = my_sched::Registry::collect(&[]).expect("no duplicates");
    assert!(registry.get("renamed").is_some());
    assert!(registry.get("through_reexport").is_some());
    let _ = inner::through_reexport::job(3);
}
