use scheduler::{task, Dep};

#[task]
async fn send(mailer: Dep, to: String) {
    let _ = (mailer, to);
}

fn main() {}
