"""Default and per-folder ignore rules."""

from __future__ import annotations

import pytest

from dropline.sync.ignore import IgnoreRules


@pytest.mark.parametrize(
    "rel",
    [
        "~$report.docx",
        "sub/.~lock.budget.ods#",
        "download.crdownload",
        "a/b/file.part",
        "x.tmp",
        ".DS_Store",
        "photos/Thumbs.db",
        "desktop.ini",
        ".notes.txt.swp",
        "backup~",
    ],
)
def test_temporary_and_system_files_are_ignored_by_default(rel: str) -> None:
    assert IgnoreRules().ignored(rel)


def test_engine_directory_is_ignored_even_without_defaults() -> None:
    rules = IgnoreRules(defaults=False)
    assert rules.ignored(".dropline", is_dir=True)
    assert rules.ignored_any(".dropline/partial/abc.part")
    assert not rules.ignored("x.tmp")


@pytest.mark.parametrize("rel", ["report.docx", "tmp/notes.txt", "part/a.txt", "Thumbs.db.pdf"])
def test_ordinary_files_are_not_ignored(rel: str) -> None:
    assert not IgnoreRules().ignored(rel)


def test_folder_patterns_follow_gitignore_rules() -> None:
    rules = IgnoreRules(["build/", "*.log", "!keep.log", "/top-only.txt"])
    assert rules.ignored("build", is_dir=True)
    assert rules.ignored_any("build/out/a.o")
    assert rules.ignored("logs/x.log")
    assert not rules.ignored("keep.log")
    assert rules.ignored("top-only.txt")
    assert not rules.ignored("sub/top-only.txt")
    assert not rules.ignored("build")  # a file called build is not the build/ folder


_NAMES = [
    "report.docx",
    "~$report.docx",
    "a/b/~$x",
    ".~lock.budget.ods#",
    "x.tmp",
    "x.tmp.pdf",
    "dir.part/inner.txt",
    ".DS_Store",
    "a/.DS_Store/b",
    "._resource",
    "Thumbs.db",
    "Thumbs.db.pdf",
    "$RECYCLE.BIN",
    "a/.Trashes",
    "backup~",
    "~backup",
    ".goutputstream-ABC",
    "build",
    "src/build",
    "build.txt",
    "logs/x.log",
    "top-only.txt",
    "sub/top-only.txt",
    ".dropline",
    ".dropline/partial/x",
    "ünïcode/naïve.tmp",
]


@pytest.mark.parametrize("patterns", [(), ("build/", "*.log", "/top-only.txt", "# a comment", "")])
def test_ignore_answers_exactly_as_pathspec_for_patterns_without_negation(
    patterns: tuple[str, ...],
) -> None:
    # Without a "!pattern" the rules match all patterns with one regex: same answers.
    rules = IgnoreRules(patterns)
    assert rules._any is not None
    for rel in _NAMES:
        for is_dir in (False, True):
            path = rel + "/" if is_dir else rel
            assert rules.ignored(rel, is_dir) == bool(rules._spec.match_file(path)), path


def test_a_negated_pattern_falls_back_to_pathspec_in_order() -> None:
    rules = IgnoreRules(["*.log", "!keep.log"])
    assert rules._any is None
    assert rules.ignored("x.log") and not rules.ignored("keep.log")
