use scheduler::{task, Dep, JobContext};

// A dependency must be `Send + Sync + 'static`: `Rc` is not.
#[task]
async fn send(counter: Dep<std::rc::Rc<u32>>, ctx: JobContext) {
    let _ = (counter, ctx);
}

fn main() {}
