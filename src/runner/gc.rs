//! `gc`: ends what `log`s that died left behind (a crash, a server gone for longer than the
//! retries last), the way MLflow's own client ends a failed log: chainlog's runs still
//! `RUNNING` become `FAILED` and its logged models still `PENDING` become `UPLOAD_FAILED`.
//! Only entries tagged `chainlog.version` and older than a given age are touched, so a log in
//! progress elsewhere is left alone.

use std::time::{Duration, SystemTime};

use crate::store::{ModelStatus, RunStatus, StoreError, TrackingStore, Unfinished};

/// What `gc` found and (unless a dry run) ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GcReport {
    /// Run ids, now FAILED (or to be, in a dry run).
    pub runs: Vec<String>,
    /// Logged model ids, now UPLOAD_FAILED (or to be).
    pub models: Vec<String>,
    /// Nothing was changed.
    pub dry_run: bool,
}

/// Ends chainlog's runs and models left unfinished for longer than `older_than`, in the
/// experiment named `experiment` or in all.
///
/// # Errors
///
/// The store could not be searched or refused a change; what was ended before stays ended.
pub async fn fail_unfinished(
    store: &dyn TrackingStore,
    experiment: Option<&str>,
    older_than: Duration,
    dry_run: bool,
) -> Result<GcReport, StoreError> {
    let now = unix_ms(SystemTime::now());
    let cutoff = now.saturating_sub(i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX));
    let Unfinished { runs, models } = store.find_unfinished(experiment, cutoff).await?;
    if !dry_run {
        for model in &models {
            store
                .finalize_logged_model(&model.model_id, ModelStatus::UploadFailed)
                .await?;
        }
        for run in &runs {
            store
                .set_run_status(&run.run_id, RunStatus::Failed, now)
                .await?;
        }
    }
    Ok(GcReport {
        runs: runs.into_iter().map(|r| r.run_id).collect(),
        models: models.into_iter().map(|m| m.model_id).collect(),
        dry_run,
    })
}

fn unix_ms(at: SystemTime) -> i64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CHAINLOG_VERSION_TAG, SqliteStore};

    /// A crashed log (run RUNNING, model PENDING, both chainlog's) is ended; an entry of
    /// another tool and one younger than the age are left alone; a dry run changes nothing.
    #[tokio::test]
    async fn unfinished_chainlog_entries_older_than_the_age_are_ended() {
        let tmp = tempfile::tempdir().unwrap();
        let store =
            SqliteStore::open(&tmp.path().join("mlflow.db"), &tmp.path().join("mlruns")).unwrap();
        let ours = vec![(CHAINLOG_VERSION_TAG.to_owned(), "0.1.0".to_owned())];
        let exp = store.get_or_create_experiment("e").await.unwrap();
        let crashed = store
            .create_run(&exp.id, "crashed", 1_000, &ours)
            .await
            .unwrap();
        let pending = store
            .create_logged_model(&exp.id, "chain", &crashed.run_id, &[], &ours)
            .await
            .unwrap();
        let foreign = store
            .create_run(&exp.id, "foreign", 1_000, &[])
            .await
            .unwrap();
        let young_start = unix_ms(SystemTime::now());
        let young = store
            .create_run(&exp.id, "young", young_start, &ours)
            .await
            .unwrap();

        let dry = fail_unfinished(&store, None, Duration::from_secs(3600), true)
            .await
            .unwrap();
        assert_eq!(dry.runs, [crashed.run_id.as_str()]);
        let again = fail_unfinished(&store, None, Duration::from_secs(3600), false)
            .await
            .unwrap();
        assert_eq!(
            again.runs,
            [crashed.run_id.as_str()],
            "the dry run changed something"
        );
        // The model was created just now: only an age of zero reaches it.
        assert!(again.models.is_empty());
        let models = fail_unfinished(&store, None, Duration::ZERO, false)
            .await
            .unwrap();
        assert_eq!(models.models, [pending.model_id.as_str()]);
        assert_eq!(models.runs, [young.run_id.as_str()]);
        let left = store.find_unfinished(None, i64::MAX).await.unwrap();
        assert!(left.runs.is_empty() && left.models.is_empty(), "{left:?}");
        let model = store.get_logged_model(&pending.model_id).await.unwrap();
        assert_eq!(model.status, "UPLOAD_FAILED");
        // Another tool's run is never touched; another experiment is left out when one is named.
        assert_ne!(foreign.run_id, crashed.run_id);
        let other = store.get_or_create_experiment("other").await.unwrap();
        store
            .create_run(&other.id, "x", 1_000, &ours)
            .await
            .unwrap();
        let scoped = fail_unfinished(&store, Some("e"), Duration::ZERO, true)
            .await
            .unwrap();
        assert!(scoped.runs.is_empty(), "{scoped:?}");
        // A name that is no experiment is an error, not a clean store.
        let err = fail_unfinished(&store, Some("nope"), Duration::ZERO, true)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("`nope`"), "{err}");
    }
}
