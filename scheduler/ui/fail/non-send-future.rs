use std::rc::Rc;

use scheduler::task;

async fn pause() {}

#[task]
async fn count(n: u32) {
    let shared = Rc::new(n);
    pause().await;
    let _ = shared;
}

fn main() {}
