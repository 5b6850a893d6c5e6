//! A worker: one executor process in the guest (0 is the VM's own, the root executor; others
//! are spawned with other credentials). Every request that runs in an executor goes through a
//! [`Worker`] handle: `vm.worker(id).syscall(...)`, or `vm.root()` for the root executor.

use super::{unexpected, Vm, VmError, DEFAULT_EXEC_TIMEOUT, HOST_MARGIN};
use provium_agent::protocol::{
    ExecCall, ExecResult, IsolatedCase, Operation, Request, Response, SyscallCall, SyscallOutcome,
    WorkerId,
};
use std::time::Duration;

/// A handle on one executor of a VM.
pub struct Worker<'a> {
    vm: &'a mut Vm,
    id: WorkerId,
}

impl Vm {
    /// The executor `id` (0: the root executor).
    pub fn worker(&mut self, id: WorkerId) -> Worker<'_> {
        Worker { vm: self, id }
    }

    /// The VM's own executor.
    pub fn root(&mut self) -> Worker<'_> {
        self.worker(0)
    }
}

impl Worker<'_> {
    pub fn id(&self) -> WorkerId {
        self.id
    }

    fn run(&mut self, op: Operation, timeout: Duration) -> Result<Response, VmError> {
        let request = Request::Run {
            worker: self.id,
            op,
        };
        check_size(&request)?;
        self.vm.request(&request, timeout)
    }

    /// One raw syscall.
    pub fn syscall(&mut self, mut call: SyscallCall) -> Result<SyscallOutcome, VmError> {
        if call.timeout_ms == 0 {
            call.timeout_ms = self.vm.syscall_timeout().as_millis() as u32;
        }
        let timeout = Duration::from_millis(call.timeout_ms as u64) + HOST_MARGIN;
        match self.run(Operation::Syscall(call), timeout)? {
            Response::Syscall(o) => Ok(o),
            other => Err(unexpected(other)),
        }
    }

    /// A syscall with integer arguments only; returns the raw return value. An executor death
    /// or timeout is an error here; use [`Worker::syscall`] to observe them as outcomes.
    pub fn syscall_args(&mut self, nr: i64, args: &[i64]) -> Result<i64, VmError> {
        let mut a = [0i64; 6];
        for (slot, v) in a.iter_mut().zip(args) {
            *slot = *v;
        }
        match self.syscall(SyscallCall {
            nr,
            args: a,
            ..Default::default()
        })? {
            SyscallOutcome::Returned { ret, .. } => Ok(ret),
            other => Err(VmError::Protocol(format!("syscall {nr}: {other:?}"))),
        }
    }

    /// Many syscalls in one round trip.
    /// Runs each case in its own child of this executor (see `Operation::Isolated`), all in one
    /// round trip; per case, one outcome per call up to the one that ended it.
    pub fn isolated(
        &mut self,
        mut cases: Vec<IsolatedCase>,
    ) -> Result<Vec<Vec<SyscallOutcome>>, VmError> {
        let per_case = self.vm.syscall_timeout().as_millis() as u32;
        let mut budget = HOST_MARGIN;
        for c in &mut cases {
            if c.timeout_ms == 0 {
                c.timeout_ms = per_case;
            }
            budget += Duration::from_millis(c.timeout_ms as u64);
        }
        let sent = cases.len();
        match self.run(Operation::Isolated(cases), budget)? {
            Response::Isolated(o) if o.len() == sent => Ok(o),
            Response::Isolated(o) => Err(VmError::Protocol(format!(
                "{sent} isolated cases were answered with {} results",
                o.len()
            ))),
            other => Err(unexpected(other)),
        }
    }

    pub fn batch(&mut self, mut calls: Vec<SyscallCall>) -> Result<Vec<SyscallOutcome>, VmError> {
        let per_call = self.vm.syscall_timeout().as_millis() as u32;
        let mut budget = HOST_MARGIN;
        for c in &mut calls {
            if c.timeout_ms == 0 {
                c.timeout_ms = per_call;
            }
            budget += Duration::from_millis(c.timeout_ms as u64);
        }
        // An executor that dies mid-batch ends the agent's answer at the fatal call; the calls
        // after it are sent again, to the fresh executor.
        let mut results = Vec::with_capacity(calls.len());
        let mut rest = calls;
        while !rest.is_empty() {
            let sent = rest.len();
            let outcomes = match self.run(Operation::Batch(rest.clone()), budget)? {
                Response::Batch(o) => o,
                other => return Err(unexpected(other)),
            };
            let got = outcomes.len();
            let cut_short = got < sent
                && matches!(
                    outcomes.last(),
                    Some(
                        SyscallOutcome::ExecutorDied(_)
                            | SyscallOutcome::TimedOut
                            | SyscallOutcome::ExecutorBroken(_)
                    )
                );
            if got > sent || (got < sent && !cut_short) {
                return Err(VmError::Protocol(format!(
                    "a batch of {sent} calls was answered with {got} outcomes"
                )));
            }
            results.extend(outcomes);
            rest.drain(..got);
        }
        Ok(results)
    }

    pub fn exec(&mut self, mut call: ExecCall) -> Result<ExecResult, VmError> {
        if call.timeout_ms == 0 {
            call.timeout_ms = DEFAULT_EXEC_TIMEOUT.as_millis() as u32;
        }
        let timeout = Duration::from_millis(call.timeout_ms as u64) + HOST_MARGIN;
        match self.run(Operation::Exec(call), timeout)? {
            Response::Exec(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    /// Runs `script` through `/bin/sh -c` (busybox).
    pub fn sh(&mut self, script: &str) -> Result<ExecResult, VmError> {
        self.exec(ExecCall {
            argv: vec![script.to_string()],
            shell: true,
            ..Default::default()
        })
    }

    pub fn read_file(&mut self, path: &str) -> Result<Vec<u8>, VmError> {
        let op = Operation::ReadFile {
            path: path.to_string(),
            max_len: (provium_agent::protocol::MAX_FRAME - 4096) as u64,
        };
        let timeout = HOST_MARGIN + self.vm.syscall_timeout();
        match self.run(op, timeout)? {
            Response::File(data) => Ok(data),
            other => Err(unexpected(other)),
        }
    }

    /// Writes a file; `mode` 0 means 0644 for a new file and unchanged for an existing one.
    pub fn write_file(&mut self, path: &str, data: &[u8], mode: u32) -> Result<(), VmError> {
        let op = Operation::WriteFile {
            path: path.to_string(),
            data: data.to_vec(),
            mode,
            append: false,
        };
        let timeout = HOST_MARGIN + self.vm.syscall_timeout();
        match self.run(op, timeout)? {
            Response::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Starts a command in the background; returns the job number.
    pub fn background(&mut self, call: ExecCall) -> Result<u32, VmError> {
        match self.run(Operation::Background(call), HOST_MARGIN)? {
            Response::Job(job) => Ok(job),
            other => Err(unexpected(other)),
        }
    }

    /// Waits up to `timeout` for a job; the result's `termination` is `None` while it runs.
    pub fn job_wait(&mut self, job: u32, timeout: Duration) -> Result<ExecResult, VmError> {
        let timeout_ms = timeout.as_millis().min(u32::MAX as u128) as u32;
        match self.run(
            Operation::JobWait { job, timeout_ms },
            timeout + HOST_MARGIN,
        )? {
            Response::Exec(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    /// Kills a job's process group.
    pub fn job_kill(&mut self, job: u32) -> Result<(), VmError> {
        match self.run(Operation::JobKill { job }, HOST_MARGIN)? {
            Response::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }
}

/// Refuses, before anything is sent, a call whose buffers are over the agent's limit or whose
/// answer could not fit in a frame: the agent would reject the first, and could not send the
/// second.
fn check_size(request: &Request) -> Result<(), VmError> {
    use provium_agent::protocol::{MAX_BUFFER, MAX_FRAME};
    let calls: &[SyscallCall] = match request {
        Request::Run {
            op: Operation::Syscall(c),
            ..
        } => std::slice::from_ref(c),
        Request::Run {
            op: Operation::Batch(c),
            ..
        } => c,
        _ => return Ok(()),
    };
    let mut answer = 0usize;
    for (i, call) in calls.iter().enumerate() {
        for b in &call.buffers {
            let len = (b.len as usize).max(b.data.len());
            if len > MAX_BUFFER {
                return Err(VmError::Unsendable(format!(
                    "call {}: a buffer of {len} bytes is over the agent's limit of {} MiB",
                    i + 1,
                    MAX_BUFFER >> 20
                )));
            }
            if b.output {
                answer += len;
            }
        }
    }
    // Room for the answer's framing and small fields.
    if answer + 4096 > MAX_FRAME {
        return Err(VmError::Unsendable(format!(
            "the output buffers add up to {answer} bytes; an answer is at most {} MiB \
             (split the call, or mark fewer buffers as output)",
            MAX_FRAME >> 20
        )));
    }
    Ok(())
}
