//! What an operator may ask a rollout for, checked in one place: the stages (cumulative
//! percentages), the failure limit (a count or a share), the target version and the concurrency.
//! The `migrator` CLI and the admin dashboard both parse their input through here, so a spec the
//! one refuses the other refuses too, with the same sentence.

use crate::rollouts::FailureLimit;

/// Why a rollout spec was refused. The message is a sentence an operator can act on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error("Stages `{0}` must be numbers like 10,50,100.")]
    StagesNotNumbers(String),
    #[error(
        "Stages must be ascending percentages between 1 and 100 ending at 100, like 10,50,100."
    )]
    StagesOutOfOrder,
    #[error("Failures `{0}` must be a count like 3 or a share like 5% (0% to 100%).")]
    FailureLimit(String),
    #[error("This build knows schema versions 1 to {latest}; {asked} is not one of them.")]
    UnknownVersion { asked: i32, latest: i32 },
    #[error("Run at least one tenant at a time per host.")]
    Concurrency,
}

/// Parses `10,50,100` into stages and checks them (see [`check_stages`]).
pub fn parse_stages(raw: &str) -> Result<Vec<i32>, SpecError> {
    let stages: Vec<i32> = raw
        .split(',')
        .map(|part| part.trim().parse::<i32>())
        .collect::<Result<_, _>>()
        .map_err(|_| SpecError::StagesNotNumbers(raw.trim().to_owned()))?;
    check_stages(&stages)?;
    Ok(stages)
}

/// Stages are ascending cumulative percentages between 1 and 100, ending at 100.
pub fn check_stages(stages: &[i32]) -> Result<(), SpecError> {
    let ascending = stages.windows(2).all(|pair| pair[0] < pair[1]);
    if stages.is_empty()
        || !ascending
        || stages.iter().any(|stage| !(1..=100).contains(stage))
        || stages.last() != Some(&100)
    {
        return Err(SpecError::StagesOutOfOrder);
    }
    Ok(())
}

impl std::str::FromStr for FailureLimit {
    type Err = SpecError;

    /// `3` (a count, 0 or more) or `5%` (a share of the stage, 0 to 100).
    fn from_str(raw: &str) -> Result<Self, SpecError> {
        let raw = raw.trim();
        let refused = || SpecError::FailureLimit(raw.to_owned());
        match raw.strip_suffix('%') {
            Some(percent) => percent
                .trim()
                .parse::<f32>()
                .ok()
                .filter(|percent| (0.0..=100.0).contains(percent))
                .map(FailureLimit::Percent)
                .ok_or_else(refused),
            None => raw
                .parse::<i32>()
                .ok()
                .filter(|count| *count >= 0)
                .map(FailureLimit::Count)
                .ok_or_else(refused),
        }
    }
}

/// The target is a version this build knows.
pub fn check_target(asked: i32, latest: i32) -> Result<(), SpecError> {
    if asked < 1 || asked > latest {
        return Err(SpecError::UnknownVersion { asked, latest });
    }
    Ok(())
}

/// At least one tenant at a time per host.
pub fn check_concurrency(per_host: i32) -> Result<(), SpecError> {
    if per_host < 1 {
        return Err(SpecError::Concurrency);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages() {
        let cases: &[(&str, Result<&[i32], SpecError>)] = &[
            ("10,50,100", Ok(&[10, 50, 100])),
            (" 100 ", Ok(&[100])),
            ("1, 2,100", Ok(&[1, 2, 100])),
            ("10,50", Err(SpecError::StagesOutOfOrder)),
            ("50,10,100", Err(SpecError::StagesOutOfOrder)),
            ("10,10,100", Err(SpecError::StagesOutOfOrder)),
            ("0,100", Err(SpecError::StagesOutOfOrder)),
            ("10,101", Err(SpecError::StagesOutOfOrder)),
            ("", Err(SpecError::StagesNotNumbers(String::new()))),
            (
                "ten,100",
                Err(SpecError::StagesNotNumbers("ten,100".into())),
            ),
            ("10;100", Err(SpecError::StagesNotNumbers("10;100".into()))),
            (
                "99999999999,100",
                Err(SpecError::StagesNotNumbers("99999999999,100".into())),
            ),
        ];
        for (raw, expected) in cases {
            let got = parse_stages(raw);
            assert_eq!(got.as_deref(), expected.as_deref(), "stages {raw:?}");
        }
    }

    #[test]
    fn failure_limits() {
        let cases: &[(&str, Option<FailureLimit>)] = &[
            ("0", Some(FailureLimit::Count(0))),
            (" 3 ", Some(FailureLimit::Count(3))),
            ("5%", Some(FailureLimit::Percent(5.0))),
            ("2.5 %", Some(FailureLimit::Percent(2.5))),
            ("100%", Some(FailureLimit::Percent(100.0))),
            ("0%", Some(FailureLimit::Percent(0.0))),
            ("101%", None),
            ("-1", None),
            ("-1%", None),
            ("three", None),
            ("", None),
            ("1e10", None),
        ];
        for (raw, expected) in cases {
            assert_eq!(raw.parse::<FailureLimit>().ok(), *expected, "limit {raw:?}");
        }
    }

    #[test]
    fn targets_and_concurrency() {
        assert_eq!(check_target(1, 2), Ok(()));
        assert_eq!(check_target(2, 2), Ok(()));
        assert_eq!(
            check_target(3, 2),
            Err(SpecError::UnknownVersion {
                asked: 3,
                latest: 2
            })
        );
        assert!(check_target(0, 2).is_err());
        assert_eq!(check_concurrency(1), Ok(()));
        assert_eq!(check_concurrency(0), Err(SpecError::Concurrency));
    }
}
