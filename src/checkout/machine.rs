//! The saga state machine as pure functions: given a saga's status and its steps'
//! statuses, what happens next. Workers persist each decision before acting on it.
use super::model::{SagaKind, SagaStatus, SagaStepName, StepStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Run (or, after a crash mid-step, re-run — steps are idempotent) this step.
    Run(SagaStepName),
    /// Undo this completed step (compensations are idempotent too).
    Compensate(SagaStepName),
    /// Every step succeeded.
    Complete,
    /// A step failed and every completed step has been undone.
    FinishCompensated,
    /// Nothing to do: the saga is terminal.
    Done,
}

/// The next action for a saga whose steps (in the kind's order) have `statuses`.
pub fn next_action(
    kind: SagaKind,
    status: SagaStatus,
    statuses: &[(SagaStepName, StepStatus)],
) -> Action {
    if status.is_terminal() {
        return Action::Done;
    }
    let ordered: Vec<(SagaStepName, StepStatus)> = kind
        .steps()
        .iter()
        .map(|name| {
            let status = statuses
                .iter()
                .find(|(n, _)| n == name)
                .map_or(StepStatus::Pending, |(_, s)| *s);
            (*name, status)
        })
        .collect();
    let failed = ordered.iter().any(|(_, s)| *s == StepStatus::Failed);
    if status == SagaStatus::Compensating || failed {
        // Undo in reverse order whatever succeeded (or was being undone).
        return ordered
            .iter()
            .rev()
            .find(|(_, s)| matches!(s, StepStatus::Succeeded | StepStatus::Compensating))
            .map_or(Action::FinishCompensated, |(name, _)| {
                Action::Compensate(*name)
            });
    }
    ordered
        .iter()
        .find(|(_, s)| *s != StepStatus::Succeeded)
        .map_or(Action::Complete, |(name, _)| Action::Run(*name))
}

/// The saga status that goes with an action about to be taken.
pub fn status_for(action: Action, current: SagaStatus) -> SagaStatus {
    match action {
        Action::Run(_) => SagaStatus::Running,
        Action::Compensate(_) => SagaStatus::Compensating,
        Action::Complete => SagaStatus::Completed,
        Action::FinishCompensated => SagaStatus::Compensated,
        Action::Done => current,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SagaStepName::*;
    use StepStatus::*;

    fn checkout(status: SagaStatus, steps: &[(SagaStepName, StepStatus)]) -> Action {
        next_action(SagaKind::Checkout, status, steps)
    }

    #[test]
    fn steps_run_in_order_and_complete() {
        assert_eq!(
            checkout(SagaStatus::Pending, &[]),
            Action::Run(ReserveStock)
        );
        assert_eq!(
            checkout(SagaStatus::Running, &[(ReserveStock, Succeeded)]),
            Action::Run(ChargePayment)
        );
        assert_eq!(
            checkout(
                SagaStatus::Running,
                &[
                    (ReserveStock, Succeeded),
                    (ChargePayment, Succeeded),
                    (CreateOrder, Succeeded)
                ]
            ),
            Action::Complete
        );
    }

    #[test]
    fn a_step_interrupted_by_a_crash_runs_again() {
        assert_eq!(
            checkout(
                SagaStatus::Running,
                &[(ReserveStock, Succeeded), (ChargePayment, Running)]
            ),
            Action::Run(ChargePayment)
        );
    }

    #[test]
    fn a_failure_compensates_completed_steps_in_reverse() {
        let failed_at_order = [
            (ReserveStock, Succeeded),
            (ChargePayment, Succeeded),
            (CreateOrder, Failed),
        ];
        assert_eq!(
            checkout(SagaStatus::Running, &failed_at_order),
            Action::Compensate(ChargePayment)
        );
        let refunded = [
            (ReserveStock, Succeeded),
            (ChargePayment, Compensated),
            (CreateOrder, Failed),
        ];
        assert_eq!(
            checkout(SagaStatus::Compensating, &refunded),
            Action::Compensate(ReserveStock)
        );
        let released = [
            (ReserveStock, Compensated),
            (ChargePayment, Compensated),
            (CreateOrder, Failed),
        ];
        assert_eq!(
            checkout(SagaStatus::Compensating, &released),
            Action::FinishCompensated
        );
    }

    #[test]
    fn a_declined_payment_releases_stock_only() {
        let declined = [(ReserveStock, Succeeded), (ChargePayment, Failed)];
        assert_eq!(
            checkout(SagaStatus::Running, &declined),
            Action::Compensate(ReserveStock)
        );
    }

    #[test]
    fn a_failed_reservation_has_nothing_to_undo() {
        assert_eq!(
            checkout(SagaStatus::Running, &[(ReserveStock, Failed)]),
            Action::FinishCompensated
        );
    }

    #[test]
    fn an_interrupted_compensation_resumes() {
        let interrupted = [
            (ReserveStock, Compensating),
            (ChargePayment, Compensated),
            (CreateOrder, Failed),
        ];
        assert_eq!(
            checkout(SagaStatus::Compensating, &interrupted),
            Action::Compensate(ReserveStock)
        );
    }

    #[test]
    fn terminal_sagas_do_nothing() {
        for status in [
            SagaStatus::Completed,
            SagaStatus::Compensated,
            SagaStatus::Failed,
        ] {
            assert_eq!(checkout(status, &[]), Action::Done);
        }
    }

    #[test]
    fn cancellations_run_the_checkout_backwards() {
        assert_eq!(
            next_action(SagaKind::CancelOrder, SagaStatus::Pending, &[]),
            Action::Run(CreateOrder)
        );
        assert_eq!(
            status_for(Action::Run(CreateOrder), SagaStatus::Pending),
            SagaStatus::Running
        );
    }
}
