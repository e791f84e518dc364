//! A child process that is killed when dropped, and when the test that started it dies
//! (PDEATHSIG): the control plane's programs, Firestore's emulator.

use std::path::Path;
use std::process::{Child, Command, Stdio};

pub struct Process {
    pub name: &'static str,
    child: Child,
}

impl Process {
    /// Starts `command` with its output in `log`; panics when it cannot.
    pub fn spawn(name: &'static str, command: &mut Command, log: &Path) -> Self {
        Self::try_spawn(name, command, log).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts `command` with its output in `log`, or says why not.
    pub fn try_spawn(name: &'static str, command: &mut Command, log: &Path) -> Result<Self, String> {
        use std::os::unix::process::CommandExt;
        let log = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill the child if we die.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        Ok(Self { name, child })
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
