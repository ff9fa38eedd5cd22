//! [`PromptSet`]: the named prompts a chain reads, loaded together from one prompts folder.

use std::collections::BTreeMap;
use std::path::{Component, Path};

use super::{PromptError, PromptTemplate};

/// A chain's prompts by name. Names are the keys a chain asks for, not file names: the
/// config maps `summary` to `summarize.hbs`, so a prompt file can be renamed without touching
/// the chain.
#[derive(Debug, Clone, Default)]
pub struct PromptSet {
    prompts: BTreeMap<String, PromptTemplate>,
}

impl PromptSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads every entry (`name` → path relative to `prompts_dir`, a `.hbs` file or a chat
    /// folder), compiling each once.
    ///
    /// # Errors
    ///
    /// [`PromptError::BadPath`] for an absolute entry or one climbing out with `..`; else the
    /// first error of [`PromptTemplate::from_path`], in name order.
    pub fn load(
        prompts_dir: &Path,
        entries: &BTreeMap<String, String>,
    ) -> Result<Self, PromptError> {
        let mut prompts = BTreeMap::new();
        for (name, relative) in entries {
            let relative = Path::new(relative);
            let inside = relative
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
                && relative
                    .components()
                    .any(|c| matches!(c, Component::Normal(_)));
            if !inside {
                return Err(PromptError::BadPath {
                    path: relative.to_path_buf(),
                });
            }
            let clean: std::path::PathBuf = relative
                .components()
                .filter(|c| matches!(c, Component::Normal(_)))
                .collect();
            let template = super::load::load(name, prompts_dir, &clean)?;
            prompts.insert(name.clone(), template);
        }
        Ok(Self { prompts })
    }

    /// The prompt a chain named.
    ///
    /// # Errors
    ///
    /// [`PromptError::UnknownPrompt`] listing the names the set holds.
    ///
    /// # Examples
    ///
    /// ```
    /// use chainlog::prompt::{PromptSet, PromptTemplate};
    /// let mut set = PromptSet::new();
    /// set.insert("summary", PromptTemplate::text("summary", "{{text}}")?);
    /// assert_eq!(set.get("summary")?.name(), "summary");
    /// assert!(set.get("sumary").unwrap_err().to_string().contains("known prompts: `summary`"));
    /// # Ok::<(), chainlog::prompt::PromptError>(())
    /// ```
    pub fn get(&self, name: &str) -> Result<&PromptTemplate, PromptError> {
        self.prompts
            .get(name)
            .ok_or_else(|| PromptError::UnknownPrompt {
                name: name.to_owned(),
                known: self.prompts.keys().cloned().collect(),
            })
    }

    /// Adds or replaces the prompt under `name`; returns the one replaced.
    pub fn insert(
        &mut self,
        name: impl Into<String>,
        template: PromptTemplate,
    ) -> Option<PromptTemplate> {
        self.prompts.insert(name.into(), template)
    }

    /// The prompts, by name in sorted order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &PromptTemplate)> {
        self.prompts.iter().map(|(name, t)| (name.as_str(), t))
    }

    /// How many prompts the set holds.
    pub fn len(&self) -> usize {
        self.prompts.len()
    }

    /// Whether the set holds no prompt.
    pub fn is_empty(&self) -> bool {
        self.prompts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn entries(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn load_reads_text_and_chat_entries_by_name() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("summarize.hbs"), "Summarize {{text}}\n").unwrap();
        fs::create_dir(dir.path().join("chat_qa")).unwrap();
        fs::write(dir.path().join("chat_qa/01-system.hbs"), "Be brief.").unwrap();
        fs::write(dir.path().join("chat_qa/02-user.hbs"), "{{q}}").unwrap();
        let set = PromptSet::load(
            dir.path(),
            &entries(&[("summary", "summarize.hbs"), ("qa", "./chat_qa")]),
        )
        .unwrap();
        assert_eq!(set.len(), 2);
        let names: Vec<&str> = set.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["qa", "summary"]);
        assert_eq!(set.get("summary").unwrap().name(), "summary");
        let qa = set.get("qa").unwrap();
        assert_eq!(
            qa.files()[1].relative_path,
            Path::new("chat_qa/02-user.hbs")
        );
    }

    #[test]
    fn get_unknown_name_lists_the_known_ones() {
        let mut set = PromptSet::new();
        set.insert("summary", PromptTemplate::text("summary", "x").unwrap());
        set.insert("qa", PromptTemplate::text("qa", "y").unwrap());
        let err = set.get("sumary").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown prompt `sumary`; known prompts: `qa`, `summary`"
        );
    }

    #[test]
    fn load_refuses_paths_leaving_the_prompts_folder() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["../secret.hbs", "/etc/passwd", "a/../../b.hbs", ""] {
            let err = PromptSet::load(dir.path(), &entries(&[("p", bad)])).unwrap_err();
            assert!(matches!(err, PromptError::BadPath { .. }), "{bad}: {err:?}");
        }
    }

    #[test]
    fn load_names_a_missing_entry() {
        let dir = tempfile::tempdir().unwrap();
        let err = PromptSet::load(dir.path(), &entries(&[("p", "gone.hbs")])).unwrap_err();
        assert!(
            matches!(&err, PromptError::NotFound { path } if path.ends_with("gone.hbs")),
            "{err}"
        );
    }
}
