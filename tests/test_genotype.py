"""Tests of nasp.spaces.darts_cnn.genotype: validation, the JSON and DARTS text formats, files
and resolution."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nasp.core.ops import OPS
from nasp.errors import GenotypeError
from nasp.spaces import GENOTYPE_FILE, resolve_genotype
from nasp.spaces.darts_cnn.genotype import BUILTIN_GENOTYPES, Genotype

# DARTS_V2 exactly as in the DARTS repository (cnn/genotypes.py).
DARTS_V2_REPO_TEXT = (
    "DARTS_V2 = Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
    "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
    "('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
    "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
)
# The same cell as a DARTS search prints it (concat as a range) and as it appears in many
# repositories: wrapped over lines, with tuples and surrounding whitespace.
DARTS_V2_SEARCH_TEXT = """
    DARTS_V2 = Genotype(
        normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0),
                ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0),
                ('skip_connect', 0), ('dil_conv_3x3', 2)],
        normal_concat=range(2, 6),
        reduce=(('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2),
                ('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2),
                ('skip_connect', 2), ('max_pool_3x3', 1)),
        reduce_concat=range(2, 6),
    )
"""

DARTS_V2 = BUILTIN_GENOTYPES["DARTS_V2"]
SKIP_1 = [("skip_connect", 0), ("skip_connect", 1)]  # a valid one-node cell


def one_node(**overrides: object) -> Genotype:
    """A one-node genotype with some fields replaced."""
    fields: dict[str, object] = {
        "normal": SKIP_1, "normal_concat": [2], "reduce": SKIP_1, "reduce_concat": [2]}
    fields.update(overrides)
    return Genotype(**fields)


@st.composite
def cells(draw: st.DrawFn, steps: int) -> tuple[list[tuple[str, int]], list[int]]:
    """Valid (pairs, concat) of a cell with ``steps`` nodes."""
    pairs = [
        (draw(st.sampled_from(sorted(OPS))), draw(st.integers(0, node + 1)))
        for node in range(steps) for _ in range(2)
    ]
    concat = draw(st.lists(st.integers(0, steps + 1), min_size=1, unique=True))
    return pairs, concat


@st.composite
def genotypes(draw: st.DrawFn) -> Genotype:
    """Valid genotypes with 1 to 5 nodes per cell."""
    steps = draw(st.integers(1, 5))
    normal, normal_concat = draw(cells(steps))
    reduce, reduce_concat = draw(cells(steps))
    return Genotype(normal=normal, normal_concat=normal_concat, reduce=reduce,
                    reduce_concat=reduce_concat)


# ------------------------------------------------------------------------ construction / data


def test_builtins_have_the_published_shape() -> None:
    assert set(BUILTIN_GENOTYPES) == {"DARTS_V1", "DARTS_V2", "NASP"}
    for genotype in BUILTIN_GENOTYPES.values():
        assert genotype.steps == 4
        assert genotype.normal_concat == genotype.reduce_concat == (2, 3, 4, 5)
    assert BUILTIN_GENOTYPES["NASP"].normal[0] == ("conv_3x1_1x3", 0)
    assert BUILTIN_GENOTYPES["NASP"].reduce[3] == ("max_pool_5x5", 1)
    assert BUILTIN_GENOTYPES["DARTS_V1"].reduce[-1] == ("avg_pool_3x3", 0)


def test_lists_and_ranges_are_normalised_to_tuples() -> None:
    as_lists = Genotype(
        normal=[list(pair) for pair in DARTS_V2.normal], normal_concat=range(2, 6),
        reduce=list(DARTS_V2.reduce), reduce_concat=[2, 3, 4, 5])
    assert as_lists == DARTS_V2
    assert hash(as_lists) == hash(DARTS_V2)
    assert isinstance(as_lists.normal, tuple) and isinstance(as_lists.normal[0], tuple)
    assert as_lists.normal_concat == (2, 3, 4, 5)
    assert len({as_lists, DARTS_V2}) == 1


def test_genotype_is_immutable() -> None:
    with pytest.raises(AttributeError):
        DARTS_V2.normal = ()  # type: ignore[misc]


def test_numpy_integers_are_accepted_as_ints() -> None:
    np = pytest.importorskip("numpy")
    genotype = one_node(normal=[("skip_connect", np.int64(0)), ("skip_connect", np.int64(1))],
                        normal_concat=list(np.arange(2, 3)))
    assert genotype.normal == (("skip_connect", 0), ("skip_connect", 1))
    assert type(genotype.normal[0][1]) is int and type(genotype.normal_concat[0]) is int


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"normal": [("no_such_op", 0), ("skip_connect", 1)]}, "unknown op 'no_such_op'"),
        ({"normal": [(3, 0), ("skip_connect", 1)]}, "unknown op 3"),
        ({"normal": [("skip_connect", 0), ("skip_connect", 2)]}, "input index 2 is out of range"),
        ({"reduce": [("skip_connect", -1), ("skip_connect", 1)]}, "reduce[0]"),
        ({"normal": [("skip_connect", 0), ("skip_connect", True)]}, "must be an int"),
        ({"normal": [("skip_connect", 0), ("skip_connect", 1.0)]}, "must be an int"),
        ({"normal": [("skip_connect", 0)]}, "non-zero even number"),
        ({"normal": SKIP_1 + [("skip_connect", 0)]}, "non-zero even number"),
        ({"normal": []}, "non-zero even number"),
        ({"normal": "skip_connect"}, "must be a list"),
        ({"normal": [("skip_connect", 0, 1), ("skip_connect", 1)]}, "pair"),
        ({"normal": [["skip_connect"], ("skip_connect", 1)]}, "pair"),
        ({"normal_concat": [2, 2]}, "appears twice"),
        ({"normal_concat": [3]}, "out of range 0..2"),
        ({"reduce_concat": [-1]}, "reduce_concat[0]"),
        ({"normal_concat": []}, "empty"),
        ({"normal_concat": [True]}, "must be an int"),
        ({"normal_concat": ["2"]}, "must be an int"),
        ({"normal_concat": 2}, "must be a list"),
        ({"normal_concat": range(10**30)}, "more than 3 entries"),
        ({"normal": SKIP_1 + SKIP_1}, "same number of nodes"),
    ],
)
def test_each_validation_rule_rejects(overrides: dict[str, object], fragment: str) -> None:
    with pytest.raises(GenotypeError) as info:
        one_node(**overrides)
    assert fragment in str(info.value)


def test_error_names_cell_node_and_index() -> None:
    normal = list(DARTS_V2.normal)
    normal[5] = ("skip_connect", 4)  # second input of node 4 (states 0..3 allowed)
    with pytest.raises(GenotypeError) as info:
        Genotype(normal=normal, normal_concat=[2, 3, 4, 5], reduce=DARTS_V2.reduce,
                 reduce_concat=[2, 3, 4, 5])
    message = str(info.value)
    assert "normal[5]" in message and "node 4" in message and "index 4" in message
    assert "0..3" in message


def test_genotype_error_is_a_value_error() -> None:
    assert issubclass(GenotypeError, ValueError)


# ---------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", sorted(BUILTIN_GENOTYPES))
def test_builtin_round_trips(name: str, tmp_path: os.PathLike[str]) -> None:
    genotype = BUILTIN_GENOTYPES[name]
    assert_round_trips(genotype, tmp_path)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(genotype=genotypes())
def test_generated_round_trips(genotype: Genotype, tmp_path: os.PathLike[str]) -> None:
    assert_round_trips(genotype, tmp_path)


def assert_round_trips(genotype: Genotype, folder: os.PathLike[str]) -> None:
    """Every format gives back an equal genotype."""
    assert Genotype.from_dict(genotype.to_dict()) == genotype
    assert Genotype.from_dict(json.loads(json.dumps(genotype.to_dict()))) == genotype
    assert Genotype.from_json(genotype.to_json()) == genotype
    assert Genotype.from_json(genotype.to_json(indent=2)) == genotype
    assert Genotype.parse(genotype.to_text()) == genotype
    assert Genotype.parse(str(genotype)) == genotype
    assert Genotype.parse(repr(genotype)) == genotype  # the dataclass repr uses tuples
    path = os.path.join(folder, "genotype.json")
    genotype.save(path)
    assert Genotype.load(path) == genotype


def test_to_dict_layout() -> None:
    genotype = one_node(normal=[("sep_conv_3x3", 0), ("skip_connect", 1)])
    assert genotype.to_dict() == {
        "space": "darts",
        "normal": [["sep_conv_3x3", 0], ["skip_connect", 1]],
        "normal_concat": [2],
        "reduce": [["skip_connect", 0], ["skip_connect", 1]],
        "reduce_concat": [2],
    }


def test_text_is_darts_reference_style() -> None:
    assert str(DARTS_V2) == DARTS_V2_REPO_TEXT.removeprefix("DARTS_V2 = ")


def test_compact_format() -> None:
    genotype = one_node(normal=[("sep_conv_3x3", 0), ("dil_conv_3x3", 1)], reduce_concat=(2,))
    assert genotype.compact() == (
        "normal: 2<-sep_conv_3x3(0),dil_conv_3x3(1) concat=2 | "
        "reduce: 2<-skip_connect(0),skip_connect(1) concat=2")
    assert BUILTIN_GENOTYPES["DARTS_V2"].compact().startswith(
        "normal: 2<-sep_conv_3x3(0),sep_conv_3x3(1) 3<-sep_conv_3x3(0),sep_conv_3x3(1) "
        "4<-sep_conv_3x3(1),skip_connect(0) 5<-skip_connect(0),dil_conv_3x3(2) concat=2,3,4,5 | ")


# -------------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("text", [DARTS_V2_REPO_TEXT, DARTS_V2_SEARCH_TEXT])
def test_parse_published_darts_v2(text: str) -> None:
    assert Genotype.parse(text) == DARTS_V2


def test_parse_darts_v1_as_published() -> None:
    text = (
        "DARTS_V1 = Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
        "('skip_connect', 0), ('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1), "
        "('sep_conv_3x3', 0), ('skip_connect', 2)], normal_concat=[2, 3, 4, 5], "
        "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
        "('max_pool_3x3', 0), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), "
        "('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])")
    assert Genotype.parse(text) == BUILTIN_GENOTYPES["DARTS_V1"]


def test_parse_reports_invalid_content_precisely() -> None:
    text = DARTS_V2_REPO_TEXT.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', -6)")
    with pytest.raises(GenotypeError, match=r"normal\[7\].*-6"):
        Genotype.parse(text)


def test_parse_never_evaluates_code(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    monkeypatch.setattr(os, "system", calls.append)
    text = ("Genotype(normal=__import__('os').system('x'), normal_concat=[2], "
            "reduce=[('skip_connect', 0), ('skip_connect', 1)], reduce_concat=[2])")
    with pytest.raises(GenotypeError, match="not allowed"):
        Genotype.parse(text)
    assert calls == []


REST = "normal_concat=[2], reduce=[('skip_connect', 0), ('skip_connect', 1)], reduce_concat=[2]"


@pytest.mark.parametrize(
    "text",
    [
        f"Genotype(normal=x, {REST})",
        f"Genotype(normal=[('skip_connect', 0), ('skip_connect', a.b)], {REST})",
        f"Genotype(normal=[('skip_connect', 0), ('skip_connect', 0 + 1)], {REST})",
        f"Genotype(normal=[('skip_connect', 0), (f'{{x}}', 1)], {REST})",
        f"Genotype(normal=[*x], {REST})",
        f"Genotype(normal=[(lambda: 0)(), ('skip_connect', 1)], {REST})",
        f"Genotype(normal={{'a': 1}}, {REST})",
        f"Genotype(normal=list(x), {REST})",
        "Genotype(normal=[('skip_connect', 0), ('skip_connect', 1)], normal_concat=range(2, x), "
        "reduce=[('skip_connect', 0), ('skip_connect', 1)], reduce_concat=[2])",
        "Genotype(normal=[('skip_connect', 0), ('skip_connect', 1)], normal_concat=exit(2, 3), "
        "reduce=[('skip_connect', 0), ('skip_connect', 1)], reduce_concat=[2])",
        "Genotype(normal=[('skip_connect', 0), ('skip_connect', 1)], normal_concat=range(2, 3.0), "
        "reduce=[('skip_connect', 0), ('skip_connect', 1)], reduce_concat=[2])",
        "Genotype(normal=[('skip_connect', 0), ('skip_connect', 1)], normal_concat=range(2, 3, 0), "
        "reduce=[('skip_connect', 0), ('skip_connect', 1)], reduce_concat=[2])",
        f"Genotype([('skip_connect', 0), ('skip_connect', 1)], {REST})",
        f"Genotype(**x, {REST})",
        f"Genotype(normal=[('skip_connect', 0), ('skip_connect', 1)], extra=1, {REST})",
        f"Genotype(normal=[('skip_connect', 0), ('skip_connect', 1)], normal=[], {REST})",
        "Genotype(normal=[('skip_connect', 0), ('skip_connect', 1)], normal_concat=[2])",
        f"x.Genotype(normal=[('skip_connect', 0), ('skip_connect', 1)], {REST})",
        f"NamedTuple(normal=[('skip_connect', 0), ('skip_connect', 1)], {REST})",
        f"a.b = Genotype(normal=[('skip_connect', 0), ('skip_connect', 1)], {REST})",
        f"import os; Genotype(normal=[('skip_connect', 0), ('skip_connect', 1)], {REST})",
        "import os",
        "",
        "Genotype(",
        "normal=[('skip_connect', 0)]",
        "\0",
    ],
)
def test_parse_rejects_anything_but_literals(text: str) -> None:
    with pytest.raises(GenotypeError):
        Genotype.parse(text)


def test_parse_rejects_non_strings() -> None:
    with pytest.raises(GenotypeError, match="must be a str"):
        Genotype.parse(b"Genotype()")  # type: ignore[arg-type]


def assert_genotype_or_genotype_error(reader: Callable[[str], Genotype], text: str) -> None:
    """``reader(text)`` returns a Genotype or raises GenotypeError; nothing else escapes."""
    with contextlib.suppress(GenotypeError):
        assert isinstance(reader(text), Genotype)


@given(st.text())
def test_parse_arbitrary_text_raises_only_genotype_error(text: str) -> None:
    with pytest.raises(GenotypeError):
        Genotype.parse(text)


@given(st.text(), st.integers(0, len(DARTS_V2_REPO_TEXT)), st.integers(0, 20))
def test_parse_mangled_text_gives_genotype_or_genotype_error(
        insert: str, start: int, length: int) -> None:
    text = DARTS_V2_REPO_TEXT[:start] + insert + DARTS_V2_REPO_TEXT[start + length:]
    assert_genotype_or_genotype_error(Genotype.parse, text)


# ----------------------------------------------------------------------------------------- JSON


@given(st.text())
def test_from_json_arbitrary_text_raises_only_genotype_error(text: str) -> None:
    with pytest.raises(GenotypeError):
        Genotype.from_json(text)


@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=15),
    lambda children: st.lists(children) | st.dictionaries(st.text(max_size=15), children),
))
def test_from_dict_arbitrary_json_values_raise_only_genotype_error(data: object) -> None:
    with pytest.raises(GenotypeError):
        Genotype.from_json(json.dumps(data))


@given(st.text(), st.integers(0, len(DARTS_V2.to_json())), st.integers(0, 20))
def test_from_json_mangled_text_gives_genotype_or_genotype_error(
        insert: str, start: int, length: int) -> None:
    good = DARTS_V2.to_json()
    text = good[:start] + insert + good[start + length:]
    assert_genotype_or_genotype_error(Genotype.from_json, text)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda d: d.pop("reduce"), "missing: reduce;"),
        (lambda d: d.update(steps=4), "unexpected: 'steps'"),
        (lambda d: d.update(normal={"a": 1}), "normal must be a list"),
        (lambda d: d.update(normal_concat="2345"), "normal_concat must be a list"),
        (lambda d: d.update(normal=[[None, 0]] * 8), "unknown op None"),
        (lambda d: d.update(normal=[[["x"], 0]] * 8), "unknown op"),
        (lambda d: d.update(reduce=[["skip_connect", "0"]] * 8), "must be an int"),
    ],
)
def test_from_dict_rejects_bad_structure(change, fragment: str) -> None:
    data = DARTS_V2.to_dict()
    change(data)
    with pytest.raises(GenotypeError) as info:
        Genotype.from_dict(data)
    assert fragment in str(info.value)


@pytest.mark.parametrize("data", [None, [], "normal", 3])
def test_from_dict_rejects_non_mappings(data: object) -> None:
    with pytest.raises(GenotypeError, match="must be an object"):
        Genotype.from_dict(data)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------- files


def test_save_writes_json_with_newline(tmp_path) -> None:
    path = tmp_path / "g.json"
    DARTS_V2.save(path)
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    assert json.loads(text) == DARTS_V2.to_dict()
    assert os.listdir(tmp_path) == ["g.json"]


def test_save_replaces_an_existing_file(tmp_path) -> None:
    path = tmp_path / "g.json"
    path.write_text("x" * 10_000, encoding="utf-8")  # longer than the new content
    darts_v1 = BUILTIN_GENOTYPES["DARTS_V1"]
    darts_v1.save(path)
    assert Genotype.load(path) == darts_v1
    assert sorted(os.listdir(tmp_path)) == ["g.json"]


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_failing_save_keeps_old_file_intact(tmp_path, monkeypatch: pytest.MonkeyPatch,
                                            failing: str) -> None:
    path = tmp_path / GENOTYPE_FILE
    DARTS_V2.save(path)
    old = path.read_bytes()

    def fail(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, failing, fail)
    with pytest.raises(OSError, match="disk full"):
        BUILTIN_GENOTYPES["NASP"].save(path)
    monkeypatch.undo()
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == [GENOTYPE_FILE]  # no temporary file left behind


def test_failing_serialisation_keeps_old_file_intact(tmp_path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / GENOTYPE_FILE
    DARTS_V2.save(path)
    old = path.read_bytes()

    def fail(*args: object, **kwargs: object) -> str:
        raise RuntimeError("boom")

    monkeypatch.setattr(json, "dumps", fail)
    with pytest.raises(RuntimeError):
        BUILTIN_GENOTYPES["NASP"].save(path)
    monkeypatch.undo()
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == [GENOTYPE_FILE]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"{not json", "invalid genotype JSON"),
        (b"\xff\xfe\x00", "cannot read"),
        (b'{"normal": []}', "missing"),
        (json.dumps({**DARTS_V2.to_dict(), "normal_concat": [2, 9]}).encode(), "normal_concat[1]"),
    ],
)
def test_load_errors_name_the_path(tmp_path, content: bytes, fragment: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(GenotypeError) as info:
        Genotype.load(path)
    assert str(path) in str(info.value) and fragment in str(info.value)


def test_load_missing_file_names_the_path(tmp_path) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(GenotypeError, match="absent.json"):
        Genotype.load(path)


# ---------------------------------------------------------------------------------- resolution


@pytest.mark.parametrize("spec", ["DARTS_V2", "darts_v2", "Darts_V2", "  darts_v2 "])
def test_resolve_builtin_name_any_case(spec: str) -> None:
    assert resolve_genotype(spec) == DARTS_V2


def test_resolve_file_and_run_directory(tmp_path) -> None:
    nasp = BUILTIN_GENOTYPES["NASP"]
    run = tmp_path / "run"
    run.mkdir()
    nasp.save(run / GENOTYPE_FILE)
    assert resolve_genotype(run / GENOTYPE_FILE) == nasp
    assert resolve_genotype(str(run / GENOTYPE_FILE)) == nasp
    assert resolve_genotype(run) == nasp
    assert resolve_genotype(str(run)) == nasp


def test_resolve_file_named_like_a_builtin_prefers_the_builtin(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    BUILTIN_GENOTYPES["NASP"].save("darts_v1")
    assert resolve_genotype("darts_v1") == BUILTIN_GENOTYPES["DARTS_V1"]


def test_resolve_text() -> None:
    assert resolve_genotype(DARTS_V2_SEARCH_TEXT) == DARTS_V2
    assert resolve_genotype(str(BUILTIN_GENOTYPES["NASP"])) == BUILTIN_GENOTYPES["NASP"]


def test_resolve_directory_without_genotype(tmp_path) -> None:
    with pytest.raises(GenotypeError, match=f"holds no {GENOTYPE_FILE}"):
        resolve_genotype(tmp_path)


def test_resolve_bad_file_names_it(tmp_path) -> None:
    path = tmp_path / "g.json"
    path.write_text("[]", encoding="utf-8")
    with pytest.raises(GenotypeError, match="g.json"):
        resolve_genotype(path)


def test_resolve_bad_text_reports_the_parse_error() -> None:
    with pytest.raises(GenotypeError, match="unknown op 'sep_conv_9x9'"):
        resolve_genotype(DARTS_V2_REPO_TEXT.replace("sep_conv_3x3", "sep_conv_9x9"))


@pytest.mark.parametrize("spec", ["darts_v3", "", "   ", "no/such/file.json", "x" * 5000])
def test_resolve_nonsense_lists_what_was_tried(spec: str) -> None:
    with pytest.raises(GenotypeError) as info:
        resolve_genotype(spec)
    message = str(info.value)
    for name in BUILTIN_GENOTYPES:
        assert name in message
    assert "file" in message and "directory" in message and "Genotype(" in message
