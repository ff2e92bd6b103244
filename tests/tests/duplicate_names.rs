//! Two tasks with one wire name, in two modules: the registry refuses them at
//! start-up and names both places. (A separate test binary, since every task in
//! a binary is registered.)

use scheduler::Task;

mod billing {
    /// The first `dup`.
    #[scheduler::task(name = "dup")]
    pub(crate) async fn charge(amount: u64) {
        let _ = amount;
    }
}

mod mailing {
    /// The second `dup`.
    #[scheduler::task(name = "dup")]
    pub(crate) async fn send(to: String) {
        let _ = to;
    }
}

#[test]
fn duplicate_names_fail_naming_both_locations() {
    let error = scheduler::Registry::collect(&[]).expect_err("two tasks are named `dup`");
    let message = error.to_string();
    let first = billing::charge::registration().location.to_string();
    let second = mailing::send::registration().location.to_string();
    assert_ne!(first, second);
    assert!(message.contains("`dup`"), "{message}");
    assert!(message.contains(&first), "{message} lacks {first}");
    assert!(message.contains(&second), "{message} lacks {second}");
    assert!(message.contains("#[task(name = "), "{message}");
}
