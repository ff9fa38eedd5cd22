//! Reading prompts from disk: a file is a text prompt, a folder of `NN-<role>.hbs` files a
//! chat prompt. Owns the folder rules; compiling is [`PromptTemplate`]'s.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::template::{PromptKind, PromptTemplate, Source};
use super::{PromptError, Role};

/// [`PromptTemplate::from_path`]: `path` relative to its parent folder.
pub(super) fn from_path(name: &str, path: &Path) -> Result<PromptTemplate, PromptError> {
    let owned;
    let path = if path.file_name().is_some() {
        path
    } else {
        // `.` or `prompts/..`: name the folder for real.
        owned = fs::canonicalize(path).map_err(|e| io_error(path, e))?;
        &owned
    };
    let (Some(parent), Some(file_name)) = (path.parent(), path.file_name()) else {
        return Err(PromptError::NotFound {
            path: path.to_path_buf(),
        });
    };
    load(name, parent, Path::new(file_name))
}

/// Loads `prompts_dir/relative`, logging its files under `relative`.
///
/// # Errors
///
/// As [`PromptTemplate::from_path`].
pub(super) fn load(
    name: &str,
    prompts_dir: &Path,
    relative: &Path,
) -> Result<PromptTemplate, PromptError> {
    let path = prompts_dir.join(relative);
    let metadata = fs::metadata(&path).map_err(|e| io_error(&path, e))?;
    if metadata.is_file() {
        let source = read_source(&path, relative.to_path_buf(), None)?;
        PromptTemplate::build(name, PromptKind::Text, vec![source])
    } else if metadata.is_dir() {
        let sources = message_files(&path)?
            .into_iter()
            .map(|(role, file_name)| {
                read_source(
                    &path.join(&file_name),
                    relative.join(&file_name),
                    Some(role),
                )
            })
            .collect::<Result<_, _>>()?;
        PromptTemplate::build(name, PromptKind::Chat, sources)
    } else {
        Err(PromptError::NotFound { path })
    }
}

/// The message files of a chat folder, ordered by their number.
fn message_files(dir: &Path) -> Result<Vec<(Role, String)>, PromptError> {
    let mut numbered: Vec<(u32, Role, String)> = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let path = entry.path();
        let bad = |reason: String| PromptError::BadChatFile {
            path: path.clone(),
            reason,
        };
        let Some(file_name) = entry.file_name().to_str().map(str::to_owned) else {
            return Err(bad("the file name is not UTF-8".to_owned()));
        };
        if !fs::metadata(&path)
            .map_err(|e| io_error(&path, e))?
            .is_file()
        {
            return Err(bad(
                "a chat prompt folder holds only message files, not folders".to_owned(),
            ));
        }
        let (number, role) = parse_message_name(&file_name).map_err(bad)?;
        if let Some((_, _, other)) = numbered.iter().find(|(n, _, _)| *n == number) {
            return Err(bad(format!(
                "message number {number} is also used by `{other}`"
            )));
        }
        numbered.push((number, role, file_name));
    }
    if numbered.is_empty() {
        return Err(PromptError::BadChatFile {
            path: dir.to_path_buf(),
            reason: "the folder holds no message files (`NN-<role>.hbs`)".to_owned(),
        });
    }
    numbered.sort_by_key(|(n, _, _)| *n);
    Ok(numbered
        .into_iter()
        .map(|(_, role, name)| (role, name))
        .collect())
}

/// `01-system.hbs` → `(1, System)`; otherwise why not.
fn parse_message_name(file_name: &str) -> Result<(u32, Role), String> {
    let expected = "a chat message file is named `NN-<role>.hbs`, e.g. `01-system.hbs`";
    let Some((number, role)) = file_name
        .strip_suffix(".hbs")
        .and_then(|stem| stem.split_once('-'))
    else {
        return Err(expected.to_owned());
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(expected.to_owned());
    }
    let number = number
        .parse()
        .map_err(|_| format!("message number `{number}` is too large"))?;
    let role = Role::parse(role).ok_or_else(|| {
        format!("unknown role `{role}`; roles are system, developer, user and assistant")
    })?;
    Ok((number, role))
}

/// Reads one template file. An editor's final line ending is not part of the prompt.
fn read_source(
    path: &Path,
    relative_path: PathBuf,
    role: Option<Role>,
) -> Result<Source, PromptError> {
    let bytes = fs::read(path).map_err(|e| io_error(path, e))?;
    let text = String::from_utf8(bytes.clone()).map_err(|e| PromptError::Read {
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidData, e),
    })?;
    let body = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text)
        .to_owned();
    Ok(Source {
        relative_path,
        error_path: path.to_path_buf(),
        role,
        bytes,
        text: body,
    })
}

fn io_error(path: &Path, source: io::Error) -> PromptError {
    if source.kind() == io::ErrorKind::NotFound {
        PromptError::NotFound {
            path: path.to_path_buf(),
        }
    } else {
        PromptError::Read {
            path: path.to_path_buf(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompt::Rendered;
    use serde_json::json;

    fn write(dir: &Path, relative: &str, text: &str) {
        let path = dir.join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    #[test]
    fn a_file_loads_as_a_text_prompt_without_its_final_newline() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "summarize.hbs", "Summarize {{text}}\n");
        let t = PromptTemplate::from_path("summary", &dir.path().join("summarize.hbs")).unwrap();
        assert_eq!(t.kind(), PromptKind::Text);
        assert_eq!(
            t.render(&json!({"text": "x"})).unwrap(),
            Rendered::Text("Summarize x".into())
        );
        assert_eq!(t.files()[0].relative_path, Path::new("summarize.hbs"));
        assert_eq!(t.files()[0].bytes, b"Summarize {{text}}\n");
    }

    #[test]
    fn a_folder_loads_as_a_chat_prompt_ordered_by_number() {
        let dir = tempfile::tempdir().unwrap();
        // Written out of order; `10` sorts after `2` by number, not by name.
        write(dir.path(), "chat_qa/10-user.hbs", "{{question}}\n");
        write(dir.path(), "chat_qa/02-developer.hbs", "Cite {{source}}.\n");
        write(
            dir.path(),
            "chat_qa/01-system.hbs",
            "You answer in {{lang}}.\n",
        );
        write(dir.path(), "chat_qa/11-assistant.hbs", "Sure.\n");
        let t = PromptTemplate::from_path("qa", &dir.path().join("chat_qa")).unwrap();
        let messages = t
            .render(&json!({"question": "Why?", "source": "docs", "lang": "fr"}))
            .unwrap()
            .into_messages();
        let got: Vec<(Role, &str)> = messages
            .iter()
            .map(|m| (m.role, m.content.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (Role::System, "You answer in fr."),
                (Role::Developer, "Cite docs."),
                (Role::User, "Why?"),
                (Role::Assistant, "Sure."),
            ]
        );
        let paths: Vec<&Path> = t
            .files()
            .iter()
            .map(|f| f.relative_path.as_path())
            .collect();
        assert_eq!(
            paths,
            [
                Path::new("chat_qa/01-system.hbs"),
                Path::new("chat_qa/02-developer.hbs"),
                Path::new("chat_qa/10-user.hbs"),
                Path::new("chat_qa/11-assistant.hbs"),
            ]
        );
    }

    #[test]
    fn anything_else_in_a_chat_folder_is_an_error_naming_it() {
        for (bad, why) in [
            ("notes.txt", "named `NN-<role>.hbs`"),
            ("03-robot.hbs", "unknown role `robot`"),
            ("user.hbs", "named `NN-<role>.hbs`"),
            ("x3-user.hbs", "named `NN-<role>.hbs`"),
            ("01-user.hbs.bak", "named `NN-<role>.hbs`"),
            ("01-assistant.hbs", "also used by `01-system.hbs`"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            write(dir.path(), "qa/01-system.hbs", "hi");
            write(dir.path(), &format!("qa/{bad}"), "x");
            let err = PromptTemplate::from_path("qa", &dir.path().join("qa")).unwrap_err();
            let PromptError::BadChatFile { path, reason } = &err else {
                panic!("{bad}: {err:?}");
            };
            // Directory order decides which of two clashing files is named.
            if bad != "01-assistant.hbs" {
                assert_eq!(path.file_name().unwrap(), bad, "{err}");
                assert!(reason.contains(why), "{bad}: {reason}");
            }
        }
    }

    #[test]
    fn a_subfolder_or_an_empty_chat_folder_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("qa/01-user.hbs")).unwrap();
        let err = PromptTemplate::from_path("qa", &dir.path().join("qa")).unwrap_err();
        assert!(
            matches!(&err, PromptError::BadChatFile { reason, .. } if reason.contains("not folders")),
            "{err}"
        );
        fs::create_dir_all(dir.path().join("empty")).unwrap();
        let err = PromptTemplate::from_path("e", &dir.path().join("empty")).unwrap_err();
        assert!(
            matches!(&err, PromptError::BadChatFile { reason, .. } if reason.contains("no message files")),
            "{err}"
        );
    }

    #[test]
    fn syntax_error_names_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "broken.hbs",
            "line one\nline two\n{{#if x}}\nnever closed\n",
        );
        let path = dir.path().join("broken.hbs");
        let err = PromptTemplate::from_path("broken", &path).unwrap_err();
        let PromptError::Syntax {
            path: named,
            line,
            column,
            ..
        } = &err
        else {
            panic!("{err:?}");
        };
        assert_eq!((named, *line, *column), (&path, 3, 1));
        assert!(
            err.to_string().contains("broken.hbs` at line 3, column 1"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_path_is_not_found_and_bad_utf8_is_a_read_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = PromptTemplate::from_path("x", &dir.path().join("nope.hbs")).unwrap_err();
        assert!(matches!(err, PromptError::NotFound { .. }), "{err:?}");
        fs::write(dir.path().join("bin.hbs"), [0xff, 0xfe]).unwrap();
        let err = PromptTemplate::from_path("x", &dir.path().join("bin.hbs")).unwrap_err();
        assert!(matches!(err, PromptError::Read { .. }), "{err:?}");
    }

    #[test]
    fn files_and_sha256_do_not_depend_on_the_folder_or_read_order() {
        let one = tempfile::tempdir().unwrap();
        let two = tempfile::tempdir().unwrap();
        write(one.path(), "qa/01-system.hbs", "S {{a}}\n");
        write(one.path(), "qa/02-user.hbs", "U {{b}}\n");
        write(two.path(), "qa/02-user.hbs", "U {{b}}\n");
        write(two.path(), "qa/01-system.hbs", "S {{a}}\n");
        let a = PromptTemplate::from_path("qa", &one.path().join("qa")).unwrap();
        let b = PromptTemplate::from_path("other_name", &two.path().join("qa")).unwrap();
        assert_eq!(a.files(), b.files());
        assert_eq!(a.sha256(), b.sha256());
        write(two.path(), "qa/02-user.hbs", "U {{b}}!\n");
        let c = PromptTemplate::from_path("qa", &two.path().join("qa")).unwrap();
        assert_ne!(a.sha256(), c.sha256());
    }
}
