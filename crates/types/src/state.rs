//! Machine states, as the reference names them.

use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::ToSchema;

/// Where a machine is in its life.
///
/// Persistent: `created`, `started`, `stopped`, `suspended`, `failed`. Transient: `creating`,
/// `starting`, `stopping`, `restarting`, `suspending`, `destroying`, `updating`, `replacing`,
/// `launch_failed`. Terminal: `destroyed`, `replaced`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MachineState {
    Creating,
    Created,
    Starting,
    Started,
    Stopping,
    Stopped,
    Restarting,
    Suspending,
    Suspended,
    Updating,
    Replacing,
    Replaced,
    Destroying,
    Destroyed,
    Failed,
    LaunchFailed,
}

impl MachineState {
    pub const ALL: [MachineState; 16] = [
        Self::Creating,
        Self::Created,
        Self::Starting,
        Self::Started,
        Self::Stopping,
        Self::Stopped,
        Self::Restarting,
        Self::Suspending,
        Self::Suspended,
        Self::Updating,
        Self::Replacing,
        Self::Replaced,
        Self::Destroying,
        Self::Destroyed,
        Self::Failed,
        Self::LaunchFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "creating",
            Self::Created => "created",
            Self::Starting => "starting",
            Self::Started => "started",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Restarting => "restarting",
            Self::Suspending => "suspending",
            Self::Suspended => "suspended",
            Self::Updating => "updating",
            Self::Replacing => "replacing",
            Self::Replaced => "replaced",
            Self::Destroying => "destroying",
            Self::Destroyed => "destroyed",
            Self::Failed => "failed",
            Self::LaunchFailed => "launch_failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// A state the machine rests in until someone acts.
    pub fn is_persistent(self) -> bool {
        matches!(
            self,
            Self::Created | Self::Started | Self::Stopped | Self::Suspended | Self::Failed
        )
    }

    /// A state the machine never leaves.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Destroyed | Self::Replaced)
    }

    /// A state the machine passes through while an operation runs.
    pub fn is_transient(self) -> bool {
        !self.is_persistent() && !self.is_terminal()
    }

    /// The states `wait?state=` accepts.
    pub const WAITABLE: [MachineState; 4] = [
        Self::Started,
        Self::Stopped,
        Self::Suspended,
        Self::Destroyed,
    ];
}

impl fmt::Display for MachineState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_is_exactly_one_kind() {
        for s in MachineState::ALL {
            let kinds = [s.is_persistent(), s.is_transient(), s.is_terminal()];
            assert_eq!(kinds.iter().filter(|k| **k).count(), 1, "{s}");
            assert_eq!(MachineState::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
    }
}
