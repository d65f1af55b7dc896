//! Every command line that README.md and docs/*.md show in a shell block, taken as a user types
//! it: each `metakd …` line (with and without its optional arguments, and each of its
//! alternatives) parses with `metakd`'s command line and is accepted by the binary, and each
//! `just …` line names a recipe of the justfile with as many arguments as it takes, each a
//! `KEY=` the script behind it reads. The command line's definition passes clap's own
//! consistency checks (unique ids, value names, defaults of the right type).

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::{CommandFactory, Parser};
use metakd_experiments::cli::{Cli, Command as Subcommand};
use metakd_experiments::run::split_files::SplitRequest;

/// The languages of fenced blocks whose lines are commands (`console`: only those after `$ `).
const SHELL_LANGUAGES: [&str; 4] = ["sh", "bash", "shell", "console"];

/// Values for placeholders of options that take a number or a name; any other placeholder is a
/// path, which parsing takes as it is.
const SAMPLE_VALUES: [(&str, &str); 15] = [
    ("--cases", "4"),
    ("--shape", "16,24,24"),
    ("--release", "brats2020"),
    ("--iterations", "10"),
    ("--variant", "meta-kd"),
    ("--audio-rate", "0.5"),
    ("--image-rate", "0.5"),
    ("--task-index", "0"),
    ("--subset-groups", "3"),
    ("--case-shards", "2"),
    ("--fold", "1"),
    ("--meta-val", "5"),
    ("--seed", "0"),
    ("--meta-val-seed", "1"),
    ("--splits", "3"),
];

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A command line shown in a document.
#[derive(Debug)]
struct Shown {
    /// `file:line`.
    place: String,
    /// The line without prompt and comment, continuation lines joined.
    text: String,
}

fn documents() -> Vec<PathBuf> {
    let root = repository();
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    docs.insert(0, root.join("README.md"));
    docs
}

/// The line up to a shell comment (` #`).
fn without_comment(line: &str) -> &str {
    line.find(" #").map_or(line, |i| &line[..i]).trim_end()
}

fn is_command(text: &str) -> bool {
    ["metakd ", "just ", "cargo run --release -- "]
        .iter()
        .any(|p| text.starts_with(p))
}

/// The command lines of every shell block; panics on a fenced block without a language, so
/// that no command can hide in an unchecked block.
fn shown_commands() -> Vec<Shown> {
    let mut shown = Vec::new();
    for doc in documents() {
        let name = doc.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&doc).unwrap();
        let mut language: Option<String> = None;
        let mut current: Option<Shown> = None;
        for (index, line) in text.lines().enumerate() {
            let place = format!("{name}:{}", index + 1);
            if let Some(info) = line.trim_start().strip_prefix("```") {
                shown.extend(current.take());
                language = match language {
                    Some(_) => None,
                    None => {
                        assert!(
                            !info.trim().is_empty(),
                            "{place}: a fenced block needs a language (`sh` for commands, `text` for output)"
                        );
                        Some(info.trim().to_owned())
                    }
                };
                continue;
            }
            let Some(lang) = language.as_deref() else {
                continue;
            };
            if !SHELL_LANGUAGES.contains(&lang) {
                continue;
            }
            if let Some(command) = current.as_mut() {
                let trimmed = line.trim();
                let continues = command.text.ends_with('\\')
                    || (line.starts_with(char::is_whitespace) && trimmed.starts_with('['));
                if continues {
                    let head = command.text.trim_end_matches('\\').trim_end().to_owned();
                    command.text = format!("{head} {}", without_comment(trimmed));
                    continue;
                }
                shown.extend(current.take());
            }
            let mut trimmed = line.trim();
            if lang == "console" {
                match trimmed.strip_prefix("$ ") {
                    Some(rest) => trimmed = rest,
                    None => continue,
                }
            }
            let text = without_comment(trimmed);
            if is_command(text) {
                current = Some(Shown {
                    place,
                    text: text.to_owned(),
                });
            }
        }
        shown.extend(current.take());
    }
    shown
}

/// A piece of a command synopsis.
#[derive(Debug)]
enum Part {
    /// A word, or `a|b|c` alternatives of one word.
    Word(Vec<String>),
    /// `[ … ]`: optional, with ` | `-separated alternatives.
    Optional(Vec<Vec<Part>>),
}

fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for piece in text.split_whitespace() {
        let opening = piece.len() - piece.trim_start_matches('[').len();
        let body = piece.trim_start_matches('[');
        let closing = body.len() - body.trim_end_matches(']').len();
        let body = body.trim_end_matches(']');
        out.extend(std::iter::repeat_n("[".to_owned(), opening));
        if !body.is_empty() {
            out.push(body.trim_matches('"').to_owned());
        }
        out.extend(std::iter::repeat_n("]".to_owned(), closing));
    }
    out
}

/// Alternatives (separated by ` | `) up to the closing `]` or the end.
fn parse(tokens: &mut std::vec::IntoIter<String>) -> Vec<Vec<Part>> {
    let mut alternatives = vec![Vec::new()];
    while let Some(token) = tokens.next() {
        match token.as_str() {
            "[" => {
                let group = parse(tokens);
                alternatives.last_mut().unwrap().push(Part::Optional(group));
            }
            "]" => break,
            "|" => alternatives.push(Vec::new()),
            word => alternatives
                .last_mut()
                .unwrap()
                .push(Part::Word(word.split('|').map(str::to_owned).collect())),
        }
    }
    alternatives
}

fn width(alternatives: &[Vec<Part>]) -> usize {
    let inner = alternatives
        .iter()
        .flatten()
        .map(|part| match part {
            Part::Word(words) => words.len(),
            Part::Optional(group) => width(group),
        })
        .max()
        .unwrap_or(1);
    inner.max(alternatives.len())
}

/// The `choice`-th alternative everywhere, optional groups in or out.
fn render(alternatives: &[Vec<Part>], choice: usize, optional: bool, out: &mut Vec<String>) {
    for part in &alternatives[choice % alternatives.len()] {
        match part {
            Part::Word(words) => out.push(words[choice % words.len()].clone()),
            Part::Optional(group) if optional => render(group, choice, optional, out),
            Part::Optional(_) => {}
        }
    }
}

/// `--flag ...` repeats the flag with its earlier value, `--flag VALUE ...` repeats both, and
/// any other `...` ("and so on") is left out.
fn repeat_ellipses(words: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in words {
        if word != "..." && word != "…" {
            out.push(word);
            continue;
        }
        let n = out.len();
        if n >= 1 && out[n - 1].starts_with("--") {
            let flag = out[n - 1].clone();
            let earlier = out[..n - 1].iter().position(|w| *w == flag);
            match earlier.and_then(|i| out.get(i + 1)).cloned() {
                Some(value) => out.push(value),
                None => {
                    out.pop();
                }
            }
        } else if n >= 2 && out[n - 2].starts_with("--") {
            let pair = out[n - 2..].to_vec();
            out.extend(pair);
        }
    }
    out
}

/// A placeholder such as `DIR`, `D,H,W`, `OUT/results.parquet`, `<path>`, `…` or `$RUN`.
fn is_placeholder(word: &str) -> bool {
    if word.contains('<') || word.contains('…') || word.starts_with('$') {
        return true;
    }
    let head = word.split('/').next().unwrap_or_default();
    head.starts_with(|c: char| c.is_ascii_uppercase())
        && head
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' || c == ',')
}

/// Placeholders replaced by a sample value of their option, or by a path.
fn fill_placeholders(words: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in words {
        let filled =
            if let Some((key, value)) = word.split_once('=').filter(|_| !word.starts_with('-')) {
                if is_placeholder(value) {
                    format!("{key}=work/documented/{}", key.to_ascii_lowercase())
                } else {
                    word
                }
            } else if is_placeholder(&word) {
                let option = out.last().map(String::as_str).unwrap_or_default();
                match SAMPLE_VALUES.iter().find(|(flag, _)| *flag == option) {
                    Some((_, value)) => (*value).to_owned(),
                    None => format!(
                        "work/documented/{}",
                        word.trim_start_matches('$').to_ascii_lowercase()
                    ),
                }
            } else {
                word
            };
        out.push(filled);
    }
    out
}

/// Every way of typing `text`: each alternative, with and without the optional arguments.
fn typings(text: &str) -> Vec<Vec<String>> {
    let text = text.replacen("cargo run --release -- ", "metakd ", 1);
    let alternatives = parse(&mut tokens(&text).into_iter());
    let mut all: Vec<Vec<String>> = Vec::new();
    for choice in 0..width(&alternatives) {
        for optional in [false, true] {
            let mut words = Vec::new();
            render(&alternatives, choice, optional, &mut words);
            let words = fill_placeholders(repeat_ellipses(words));
            if !all.contains(&words) {
                all.push(words);
            }
        }
    }
    all
}

#[test]
fn the_command_line_definition_passes_clap_checks() {
    Cli::command().debug_assert();
}

#[test]
fn clap_checks_are_live_in_this_build() {
    // Two arguments with one id, as Protocol B's `--seed` and the flattened `--meta-val-seed`
    // once were: release builds skip the check unless clap keeps its debug assertions.
    let checked = std::panic::catch_unwind(|| {
        clap::Command::new("clash")
            .arg(clap::Arg::new("seed").long("seed"))
            .arg(clap::Arg::new("seed").long("meta-val-seed"))
            .debug_assert()
    });
    assert!(checked.is_err(), "clap's checks are off in this build");
}

#[test]
fn protocol_b_takes_its_seed_and_the_meta_validation_seed_apart() {
    let cli = Cli::try_parse_from([
        "metakd",
        "split",
        "protocol-b",
        "--shards",
        "s",
        "--out-dir",
        "d",
        "--seed",
        "3",
        "--meta-val-seed",
        "7",
    ])
    .unwrap();
    match cli.command {
        Subcommand::Split {
            request: SplitRequest::ProtocolB { seed, meta_val, .. },
        } => assert_eq!((seed, meta_val.seed, meta_val.count), (3, 7, 5)),
        _ => panic!("not protocol-b"),
    }
}

#[test]
fn synopses_expand_into_each_way_of_typing_them() {
    let typed = typings("metakd bench train [--preset reference|small --python python3]");
    let lines: Vec<String> = typed.iter().map(|w| w.join(" ")).collect();
    assert_eq!(
        lines,
        [
            "metakd bench train",
            "metakd bench train --preset reference --python python3",
            "metakd bench train --preset small --python python3",
        ]
    );
    let typed = typings("metakd report --sweep TABLE [--sweep ...] [--out DIR]");
    assert_eq!(
        typed[1].join(" "),
        "metakd report --sweep work/documented/table --sweep work/documented/table --out work/documented/dir"
    );
    let typed =
        typings("metakd train --config FILE [--stage warmup | --stage missing --from RUN1]");
    assert_eq!(typed.len(), 3, "{typed:?}");
    assert_eq!(
        typed[2][4..],
        ["--stage", "missing", "--from", "work/documented/run1"]
    );
    let typed = typings("just reproduce-adni TABLES=<dir> [WORK=work/adni]");
    assert_eq!(
        typed[1].join(" "),
        "just reproduce-adni TABLES=work/documented/tables WORK=work/adni"
    );
    assert_eq!(
        typings("metakd synth brats --shape D,H,W")[0][4],
        "16,24,24"
    );
}

#[test]
fn every_documented_metakd_line_parses_and_the_binary_takes_it() {
    let shown: Vec<Shown> = shown_commands()
        .into_iter()
        .filter(|s| !s.text.starts_with("just "))
        .collect();
    assert!(shown.len() >= 40, "only {} metakd lines found", shown.len());
    let mut failures = Vec::new();
    let mut subcommands = std::collections::BTreeSet::new();
    for s in &shown {
        for words in typings(&s.text) {
            subcommands.insert(words[1].clone());
            if let Err(e) = Cli::try_parse_from(&words) {
                failures.push(format!(
                    "{}: `{}`\n{}",
                    s.place,
                    words.join(" "),
                    e.render()
                ));
                continue;
            }
            // The binary, as a user runs it: the words parse up to `--help`.
            let out = Command::new(env!("CARGO_BIN_EXE_metakd"))
                .args(&words[1..])
                .arg("--help")
                .output()
                .unwrap();
            if !out.status.success() {
                failures.push(format!(
                    "{}: `{} --help` exits with {}:\n{}",
                    s.place,
                    words.join(" "),
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let undocumented: Vec<String> = Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .filter(|name| !subcommands.contains(name) && name != "help")
        .collect();
    assert!(
        undocumented.is_empty(),
        "subcommands no document shows: {undocumented:?}"
    );
}

/// A recipe of the justfile: its parameters, and the `KEY=` arguments its script takes.
#[derive(Debug)]
struct Recipe {
    /// Parameters without a default.
    required: usize,
    /// All parameters, or `None` with a variadic one (`*args`).
    most: Option<usize>,
    /// The `KEY=` words the `tools/*.sh` script it runs accepts (its `KEY=*)` cases).
    keys: Vec<String>,
}

/// The keys of a shell `case` pattern line such as `    DATA=* | WORK=*) …`.
fn case_keys(line: &str) -> Vec<String> {
    let Some((pattern, _)) = line.trim().split_once(')') else {
        return Vec::new();
    };
    let keys: Option<Vec<String>> = pattern
        .split('|')
        .map(|alternative| {
            let key = alternative.trim().strip_suffix("=*")?;
            let upper = !key.is_empty() && key.chars().all(|c| c.is_ascii_uppercase() || c == '_');
            upper.then(|| key.to_owned())
        })
        .collect();
    keys.unwrap_or_default()
}

/// The recipes of the justfile: each header line `name param param="default" *args:` and the
/// `bash tools/….sh` its body runs.
fn recipes() -> std::collections::BTreeMap<String, Recipe> {
    let root = repository();
    let justfile = std::fs::read_to_string(root.join("justfile")).unwrap();
    let mut recipes = std::collections::BTreeMap::new();
    let mut lines = justfile.lines().peekable();
    while let Some(line) = lines.next() {
        let header = line.starts_with(|c: char| c.is_ascii_lowercase())
            && !line.contains(":=")
            && line.trim_end().ends_with(':');
        if !header {
            continue;
        }
        let mut words = line.trim_end().trim_end_matches(':').split_whitespace();
        let name = words.next().unwrap().to_owned();
        let params: Vec<&str> = words.collect();
        let variadic = params
            .iter()
            .any(|p| p.starts_with('*') || p.starts_with('+'));
        let required = params
            .iter()
            .filter(|p| !p.contains('=') && !p.starts_with('*'))
            .count();
        let mut keys = Vec::new();
        while let Some(body) = lines.next_if(|l| l.starts_with(char::is_whitespace)) {
            let script = body
                .split_whitespace()
                .find(|w| w.starts_with("tools/") && w.ends_with(".sh"));
            if let Some(script) = script {
                let text = std::fs::read_to_string(root.join(script)).unwrap();
                keys.extend(text.lines().flat_map(case_keys));
            }
        }
        let most = (!variadic).then_some(params.len());
        recipes.insert(
            name,
            Recipe {
                required,
                most,
                keys,
            },
        );
    }
    recipes
}

/// Why `just ARGS` would be refused, if it would.
fn just_refuses(
    recipes: &std::collections::BTreeMap<String, Recipe>,
    args: &[String],
) -> Option<String> {
    let Some(recipe) = recipes.get(&args[0]) else {
        return Some(format!("no recipe `{}` in the justfile", args[0]));
    };
    let given = args.len() - 1;
    if given < recipe.required || recipe.most.is_some_and(|most| given > most) {
        return Some(format!(
            "`{}` takes {recipe:?} arguments, not {given}",
            args[0]
        ));
    }
    if recipe.keys.is_empty() {
        return None;
    }
    let unknown: Vec<&String> = args[1..]
        .iter()
        .filter(|a| match a.split_once('=') {
            Some((key, _)) => !recipe.keys.iter().any(|k| k == key),
            None => true,
        })
        .collect();
    (!unknown.is_empty()).then(|| format!("its script takes {:?}, not {unknown:?}", recipe.keys))
}

#[test]
fn the_justfile_reads_as_recipes_with_their_signatures() {
    let recipes = recipes();
    let bench = &recipes["bench-train"];
    assert_eq!((bench.required, bench.most), (0, Some(2)));
    assert_eq!(recipes["regress"].required, 2);
    let reproduce = &recipes["reproduce-brats2020"];
    assert_eq!(reproduce.most, None);
    assert_eq!(reproduce.keys, ["DATA", "CONFIG", "SPLITS", "WORK"]);
    assert_eq!(
        recipes["reproduce-ad-csf"].keys,
        ["TABLES", "CSV", "WORK", "SEEDS", "CONFIG"]
    );
    let words = |line: &str| {
        line.split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert!(just_refuses(&recipes, &words("reproduce-brats2020 DATA=d")).is_none());
    assert!(just_refuses(&recipes, &words("reproduce-brats2020 SPLIT=s")).is_some());
    assert!(just_refuses(&recipes, &words("reproduce-brats2021 DATA=d")).is_some());
    assert!(just_refuses(&recipes, &words("regress only-one")).is_some());
    assert!(just_refuses(&recipes, &words("bench-train small python3 extra")).is_some());
}

#[test]
fn every_documented_just_line_names_a_recipe_with_its_arguments() {
    let shown: Vec<Shown> = shown_commands()
        .into_iter()
        .filter(|s| s.text.starts_with("just "))
        .collect();
    assert!(shown.len() >= 6, "only {} just lines found", shown.len());
    let recipes = recipes();
    let mut failures = Vec::new();
    for s in &shown {
        for words in typings(&s.text) {
            if let Some(why) = just_refuses(&recipes, &words[1..]) {
                failures.push(format!("{}: `{}`: {why}", s.place, words.join(" ")));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
