//! Task and job states on the server, and the only transitions allowed between them.

use serde::{Deserialize, Serialize};

/// Where a task is in its life on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Defined, job not launched yet.
    Created,
    /// Launched, waiting for an engine.
    Queued,
    /// Assigned to an engine (P1.3: a task counts as launched when it is scheduled).
    Running,
    /// Stopped by the client; resumes from its last checkpoint.
    Stopped,
    Succeeded,
    Failed,
}

/// What can happen to a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskEvent {
    Launch,
    Assign,
    /// Its engine vanished, or handed it back (suspension): back to the queue.
    Requeue,
    Succeed,
    Fail,
    Stop,
    Resume,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a {from:?} task cannot take the event {event:?}")]
pub struct InvalidTransition {
    pub from: TaskState,
    pub event: TaskEvent,
}

impl TaskState {
    pub const ALL: [TaskState; 6] = [
        TaskState::Created,
        TaskState::Queued,
        TaskState::Running,
        TaskState::Stopped,
        TaskState::Succeeded,
        TaskState::Failed,
    ];

    /// The state after `event`, or an error if the event makes no sense now (for example a
    /// second result for a task that already succeeded: the first result wins).
    pub fn on(self, event: TaskEvent) -> Result<TaskState, InvalidTransition> {
        use TaskEvent as E;
        use TaskState as S;
        let next = match (self, event) {
            (S::Created, E::Launch) => S::Queued,
            (S::Queued, E::Assign) => S::Running,
            (S::Running, E::Requeue) => S::Queued,
            // A result is accepted from any placement while the task is not concluded: an
            // engine thought lost may still deliver, and work already done is not thrown away.
            (S::Queued | S::Running | S::Stopped, E::Succeed | E::Fail) => {
                if event == E::Succeed {
                    S::Succeeded
                } else {
                    S::Failed
                }
            }
            (S::Queued | S::Running, E::Stop) => S::Stopped,
            (S::Stopped, E::Resume) => S::Queued,
            _ => return Err(InvalidTransition { from: self, event }),
        };
        Ok(next)
    }

    pub fn is_final(self) -> bool {
        matches!(self, TaskState::Succeeded | TaskState::Failed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Created => "created",
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Stopped => "stopped",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<TaskState> {
        TaskState::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// How many tasks of a job are in each state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct JobCounts {
    pub created: u64,
    pub queued: u64,
    pub running: u64,
    pub stopped: u64,
    pub succeeded: u64,
    pub failed: u64,
}

impl JobCounts {
    pub fn total(&self) -> u64 {
        self.created + self.queued + self.running + self.stopped + self.succeeded + self.failed
    }

    pub fn concluded(&self) -> u64 {
        self.succeeded + self.failed
    }

    pub fn get_mut(&mut self, state: TaskState) -> &mut u64 {
        match state {
            TaskState::Created => &mut self.created,
            TaskState::Queued => &mut self.queued,
            TaskState::Running => &mut self.running,
            TaskState::Stopped => &mut self.stopped,
            TaskState::Succeeded => &mut self.succeeded,
            TaskState::Failed => &mut self.failed,
        }
    }

    /// Record that one task moved from `from` to `to`.
    pub fn shift(&mut self, from: TaskState, to: TaskState) {
        let source = self.get_mut(from);
        *source = source.saturating_sub(1);
        *self.get_mut(to) += 1;
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Created; tasks may be added; nothing runs until launch.
    Defining,
    /// Launched: its tasks are scheduled as engines ask for work.
    Running,
    /// Stopped by the client: no task is scheduled until it is resumed.
    Stopped,
    /// Every task has succeeded or failed.
    Completed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Defining => "defining",
            JobState::Running => "running",
            JobState::Stopped => "stopped",
            JobState::Completed => "completed",
        }
    }

    pub fn parse(text: &str) -> Option<JobState> {
        [JobState::Defining, JobState::Running, JobState::Stopped, JobState::Completed]
            .into_iter()
            .find(|s| s.as_str() == text)
    }

    /// The state a launched job settles in given its task counts: tasks may be added to a
    /// running job, so it completes when nothing is left to run, and runs again when tasks
    /// are added. A launched job whose tasks were all removed has nothing left to run either:
    /// it completes rather than run for ever (a job cannot be launched without tasks).
    pub fn settle(self, counts: &JobCounts) -> JobState {
        let unfinished = counts.created + counts.queued + counts.running + counts.stopped;
        match self {
            JobState::Running | JobState::Completed if unfinished == 0 => JobState::Completed,
            JobState::Completed if unfinished > 0 => JobState::Running,
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EVENTS: [TaskEvent; 7] = [
        TaskEvent::Launch,
        TaskEvent::Assign,
        TaskEvent::Requeue,
        TaskEvent::Succeed,
        TaskEvent::Fail,
        TaskEvent::Stop,
        TaskEvent::Resume,
    ];

    #[test]
    fn final_states_accept_nothing() {
        for state in [TaskState::Succeeded, TaskState::Failed] {
            for event in EVENTS {
                assert!(state.on(event).is_err(), "{state:?} {event:?}");
            }
        }
    }

    #[test]
    fn the_happy_path() {
        let s = TaskState::Created.on(TaskEvent::Launch).unwrap();
        let s = s.on(TaskEvent::Assign).unwrap();
        assert_eq!(s.on(TaskEvent::Succeed).unwrap(), TaskState::Succeeded);
        assert_eq!(s.on(TaskEvent::Requeue).unwrap(), TaskState::Queued);
        assert!(TaskState::Created.on(TaskEvent::Assign).is_err(), "nothing runs before launch");
        assert!(TaskState::Stopped.on(TaskEvent::Assign).is_err(), "a stopped task is not scheduled");
    }

    #[test]
    fn job_settles_when_every_task_is_concluded() {
        let mut counts = JobCounts { running: 1, succeeded: 2, ..JobCounts::default() };
        assert_eq!(JobState::Running.settle(&counts), JobState::Running);
        counts.shift(TaskState::Running, TaskState::Failed);
        assert_eq!(JobState::Running.settle(&counts), JobState::Completed);
        assert_eq!(JobState::Defining.settle(&counts), JobState::Defining, "an unlaunched job never completes");
        counts.queued += 1;
        assert_eq!(JobState::Completed.settle(&counts), JobState::Running, "tasks added after completion run");
        assert_eq!(
            JobState::Running.settle(&JobCounts::default()),
            JobState::Completed,
            "a launched job whose tasks were all removed has nothing left to run"
        );
        assert_eq!(JobState::Defining.settle(&JobCounts::default()), JobState::Defining);
    }

    proptest! {
        /// Any sequence of events, applied where valid, keeps the counts consistent and never
        /// leaves a final state.
        #[test]
        fn random_event_sequences_keep_invariants(events in proptest::collection::vec(0usize..7, 0..60)) {
            let mut state = TaskState::Created;
            let mut counts = JobCounts { created: 1, ..JobCounts::default() };
            let mut concluded = false;
            for i in events {
                if let Ok(next) = state.on(EVENTS[i]) {
                    prop_assert!(!state.is_final());
                    counts.shift(state, next);
                    state = next;
                    concluded |= next.is_final();
                }
                prop_assert_eq!(counts.total(), 1);
                prop_assert_eq!(*counts.get_mut(state), 1);
                prop_assert_eq!(concluded, state.is_final());
            }
        }
    }
}
