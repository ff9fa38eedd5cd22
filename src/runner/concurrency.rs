//! The one place effective concurrency is worked out. Two limits stay distinct: rows in flight
//! (a batch's `--concurrency`, a server's requests at once), which the caller chooses, and LLM
//! calls in flight per endpoint (`llm.concurrency`, `llms.<name>.concurrency`), which protect
//! a provider's rate limits and belong to the chain's config. Rows beyond the call limit only
//! wait for a slot, so [`ConcurrencyPlan::notice`] says so once — naming the key, the config
//! file it comes from and the `--set` that raises it — instead of leaving a slow batch
//! unexplained. Used by `predict` batches and `serve`.

use std::path::{Path, PathBuf};

use crate::{config::ChainConfig, llm::DEFAULT_CONCURRENCY};

/// Where a call limit's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitSource {
    /// Written in this config file.
    File(PathBuf),
    /// Not in this config file: the default ([`DEFAULT_CONCURRENCY`]) applies.
    Default(PathBuf),
    /// Given on the command line with `--set`.
    Set,
}

/// The call limit of one LLM section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallLimit {
    /// The config key: `llm.concurrency` or `llms.<name>.concurrency`.
    pub key: String,
    /// LLM calls in flight at once through that section's client.
    pub limit: usize,
    /// Where the value comes from.
    pub source: LimitSource,
}

/// Rows in flight against the chain's LLM call limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConcurrencyPlan {
    /// Rows (or requests) in flight at once, as asked (at least 1).
    pub rows: usize,
    /// What asked for `rows`, for the notice: `--concurrency 1024`.
    pub rows_from: String,
    /// The limit of every LLM section of the config, `llm` first.
    pub calls: Vec<CallLimit>,
}

impl ConcurrencyPlan {
    /// The plan for `rows` in flight (asked for by `rows_from`) through a chain built from
    /// `config`, after the `--set` assignments `set` (which the config already holds; they
    /// only tell where a value came from).
    pub fn new(config: &ChainConfig, rows: usize, rows_from: &str, set: &[String]) -> Self {
        let root = config.as_value();
        let mut sections: Vec<(String, &serde_json::Value)> = Vec::new();
        if let Some(llm) = root.get("llm").filter(|v| v.is_object()) {
            sections.push(("llm".to_owned(), llm));
        }
        if let Some(named) = root.get("llms").and_then(serde_json::Value::as_object) {
            for (name, section) in named.iter().filter(|(_, v)| v.is_object()) {
                sections.push((format!("llms.{name}"), section));
            }
        }
        let calls = sections
            .into_iter()
            .map(|(section, value)| {
                let key = format!("{section}.concurrency");
                let written = value
                    .get("concurrency")
                    .and_then(serde_json::Value::as_u64)
                    .and_then(|n| usize::try_from(n).ok());
                let was_set = set
                    .iter()
                    .any(|a| a.split_once('=').is_some_and(|(k, _)| k.trim() == key));
                let source = match written {
                    Some(_) if was_set => LimitSource::Set,
                    Some(_) => LimitSource::File(config.origin().to_path_buf()),
                    None => LimitSource::Default(config.origin().to_path_buf()),
                };
                CallLimit {
                    key,
                    limit: written.unwrap_or(DEFAULT_CONCURRENCY).max(1),
                    source,
                }
            })
            .collect();
        Self {
            rows: rows.max(1),
            rows_from: rows_from.to_owned(),
            calls,
        }
    }

    /// The tightest call limit, if the chain has an LLM section.
    pub fn tightest(&self) -> Option<&CallLimit> {
        self.calls.iter().min_by_key(|limit| limit.limit)
    }

    /// Rows that can have an LLM call in flight at once: the smaller of the rows asked for and
    /// the tightest call limit (what the throughput of a chain with one call per row follows).
    pub fn effective_rows(&self) -> usize {
        self.tightest()
            .map_or(self.rows, |limit| self.rows.min(limit.limit))
    }

    /// The sentence to show once at start when more rows are in flight than the tightest call
    /// limit lets call at once; `None` when the limits agree.
    pub fn notice(&self) -> Option<String> {
        let limit = self.tightest()?;
        if self.rows <= limit.limit {
            return None;
        }
        let origin = match &limit.source {
            LimitSource::File(path) => format!("set in {}", shown(path)),
            LimitSource::Default(path) => {
                format!("the default, as {} does not set it", shown(path))
            }
            LimitSource::Set => "given with --set".to_owned(),
        };
        Some(format!(
            "note: {} asks for {} rows in flight, but `{}` is {} ({origin}), so at most {} LLM \
             calls run at once and the other rows wait for a slot; the limit protects the \
             provider's rate limits — raise it with `--set {}={}` if the endpoint allows",
            self.rows_from, self.rows, limit.key, limit.limit, limit.limit, limit.key, self.rows
        ))
    }
}

/// A path as the user will recognise it: relative to the working directory when inside it.
fn shown(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> ChainConfig {
        ChainConfig::from_yaml(yaml, Path::new("/models/m-1/model_config.yaml")).unwrap()
    }

    #[test]
    fn rows_above_the_call_limit_get_a_notice_naming_key_file_and_remedy() {
        let plan = ConcurrencyPlan::new(
            &config("llm:\n  model: m\n  concurrency: 8\n"),
            1024,
            "--concurrency 1024",
            &[],
        );
        assert_eq!(plan.effective_rows(), 8);
        let notice = plan.notice().unwrap();
        for part in [
            "`llm.concurrency` is 8",
            "/models/m-1/model_config.yaml",
            "--set llm.concurrency=1024",
            "--concurrency 1024",
        ] {
            assert!(notice.contains(part), "{part} missing from: {notice}");
        }
    }

    #[test]
    fn the_tightest_section_and_defaults_and_set_values_are_named() {
        let yaml = "llm:\n  model: m\n  concurrency: 64\nllms:\n  judge:\n    model: j\n";
        let plan = ConcurrencyPlan::new(&config(yaml), 64, "--concurrency 64", &[]);
        let tightest = plan.tightest().unwrap();
        assert_eq!(
            (tightest.key.as_str(), tightest.limit),
            ("llms.judge.concurrency", DEFAULT_CONCURRENCY)
        );
        assert!(plan.notice().unwrap().contains("the default"));
        let set = ["llm.concurrency=64".to_owned()];
        let plan = ConcurrencyPlan::new(&config(yaml), 64, "x", &set);
        assert_eq!(plan.calls[0].source, LimitSource::Set);
    }

    #[test]
    fn no_notice_when_the_limits_agree_or_there_is_no_llm() {
        let plan = ConcurrencyPlan::new(
            &config("llm:\n  model: m\n  concurrency: 64\n"),
            64,
            "x",
            &[],
        );
        assert_eq!((plan.notice(), plan.effective_rows()), (None, 64));
        let plan = ConcurrencyPlan::new(&config("chain: {}\n"), 5, "x", &[]);
        assert_eq!((plan.notice(), plan.effective_rows()), (None, 5));
    }
}
