//! What the machine layer tells the file running on this thread about work it cannot see: a
//! VM waiting at the machine-wide gate, a fixture being built. The Lua session listens
//! (`observe`) and turns each into a run event, so that a CI log says why nothing else happens
//! for a while.

use std::time::Duration;

/// One thing worth saying as it starts (or ends).
#[derive(Debug, Clone)]
pub enum Notice {
    /// A VM does not fit now: `busy_cpus` of `cpus` and `busy_mib` of `mib` are held (by this
    /// process's other files and by other provium processes, `others_cpus` of them).
    Waiting {
        busy_cpus: u32,
        cpus: u32,
        busy_mib: u64,
        mib: u64,
        others_cpus: u32,
    },
    /// The VM was admitted after waiting this long.
    Admitted { waited: Duration },
    /// A fixture's snapshot is being built (booted, prepared, saved), once for every later
    /// file that resumes it.
    Building { fixture: String },
}

/// Hears about this thread's notices.
pub type Observer = std::rc::Rc<dyn Fn(Notice)>;

thread_local! {
    static OBSERVER: std::cell::RefCell<Option<Observer>> = const { std::cell::RefCell::new(None) };
}

/// Tells `observer` about every notice on this thread until the guard is dropped.
pub fn observe(observer: Observer) -> ObserverGuard {
    OBSERVER.with(|o| *o.borrow_mut() = Some(observer));
    ObserverGuard(())
}

/// Ends [`observe`].
pub struct ObserverGuard(());

impl Drop for ObserverGuard {
    fn drop(&mut self) {
        OBSERVER.with(|o| *o.borrow_mut() = None);
    }
}

/// Tells this thread's observer, if it has one.
pub fn notify(n: Notice) {
    let observer = OBSERVER.with(|o| o.borrow().clone());
    if let Some(f) = observer {
        f(n);
    }
}
