"""Pipeline config: every example loads, every mistake is a one-line ConfigError naming file, key, value, allowed."""

from __future__ import annotations

import tomllib
from pathlib import Path

import kafka.codec
import pytest

from streamsent.errors import ConfigError
from streamsent.runtime import config as config_module
from streamsent.runtime.config import (
    EmbeddedConfig,
    FileSourceConfig,
    JsonlDeadLetterConfig,
    KafkaDeadLetterConfig,
    KafkaSinkConfig,
    KafkaSourceConfig,
    ParquetSinkConfig,
    PipelineConfig,
    StdoutSinkConfig,
    config_from_dict,
    load_config,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
EXAMPLES = sorted(CONFIGS.glob("*.toml"))

KAFKA = """
[source]
type = "kafka"
bootstrap = "localhost:9092"
topics = ["in"]

[[sink]]
type = "stdout"
"""


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> PipelineConfig:
    path = tmp_path / "pipeline.toml"
    path.write_text(text)
    return load_config(path, environ=env or {})


def error(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, env)
    msg = str(info.value)
    assert "\n" not in msg, msg
    assert msg.startswith(f"{tmp_path / 'pipeline.toml'}: "), msg
    return msg


# -- the examples -------------------------------------------------------------------------------------------------
def test_there_are_examples_for_every_source_and_the_quickstart() -> None:
    assert {p.name for p in EXAMPLES} >= {"quickstart.toml", "kafka.toml", "parquet.toml", "jsonl.toml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_load_and_round_trip(path: Path) -> None:
    cfg = load_config(path, environ={})
    assert cfg.path == path
    again = config_from_dict(cfg.to_dict(), source="<round trip>")
    assert again == cfg


def test_quickstart_runs_on_the_embedded_broker() -> None:
    cfg = load_config(CONFIGS / "quickstart.toml", environ={})
    assert isinstance(cfg.source, KafkaSourceConfig) and cfg.source.embedded
    assert cfg.embedded is not None and cfg.embedded.replay and cfg.source.topics == (cfg.embedded.topic,)
    assert cfg.source.session_timeout_ms >= 6000  # noida's minimum
    assert [type(s) for s in cfg.sinks] == [StdoutSinkConfig]
    assert isinstance(cfg.dead_letter, JsonlDeadLetterConfig)
    assert cfg.model.path == "default"
    kw = cfg.source.consumer_kwargs(bootstrap="127.0.0.1:1234")
    assert kw["bootstrap_servers"] == "127.0.0.1:1234" and kw["enable_auto_commit"] is False
    with pytest.raises(ConfigError, match="embedded"):
        cfg.source.consumer_kwargs()


# -- defaults -----------------------------------------------------------------------------------------------------
def test_defaults(tmp_path: Path) -> None:
    cfg = load(tmp_path, KAFKA)
    src = cfg.source
    assert isinstance(src, KafkaSourceConfig)
    assert (src.group_id, src.auto_offset_reset, src.max_poll_records) == ("streamsent", "earliest", 500)
    assert (cfg.model.path, cfg.model.device) == ("default", "auto")
    assert (cfg.batch.max_docs, cfg.batch.max_tokens, cfg.batch.max_wait_ms) == (1024, 65_536, 50)
    assert cfg.dead_letter == JsonlDeadLetterConfig(path="dead-letter.jsonl")
    assert (cfg.state.max_keys, cfg.state.ttl_s, cfg.state.dir) == (100_000, 3600.0, None)
    assert (cfg.metrics.port, cfg.metrics.dashboard) == (0, "auto")
    assert cfg.embedded is None


def test_file_sources_and_sinks(tmp_path: Path) -> None:
    cfg = load(tmp_path, """
        [source]
        type = "parquet"
        path = "in/*.parquet"
        batch_rows = 100
        [[sink]]
        type = "parquet"
        path = "~/out"
        roll_seconds = 5
        [[sink]]
        type = "jsonl"
        path = "-"
        [state]
        dir = "ckpt"
    """)
    assert cfg.source == FileSourceConfig(type="parquet", path="in/*.parquet", batch_rows=100)
    parquet = cfg.sinks[0]
    assert isinstance(parquet, ParquetSinkConfig)
    assert parquet.path == Path("~/out").expanduser() and parquet.roll_seconds == 5.0
    assert isinstance(parquet.roll_seconds, float) and cfg.state.dir == Path("ckpt")


def test_kafka_outputs_inherit_the_source_connection(tmp_path: Path) -> None:
    cfg = load(tmp_path, """
        [source]
        type = "kafka"
        bootstrap = ["k1:9092", "k2:9093"]
        topics = "in"
        security_protocol = "SASL_SSL"
        sasl_mechanism = "PLAIN"
        sasl_plain_username = "u"
        sasl_plain_password = "secret"
        [[sink]]
        type = "kafka"
        topic = "out"
        [[sink]]
        type = "kafka"
        topic = "out"
        bootstrap = "other:9092"
        [dead_letter]
        type = "kafka"
        topic = "dlq"
    """)
    same, other = cfg.sinks
    assert isinstance(same, KafkaSinkConfig) and isinstance(other, KafkaSinkConfig)
    assert cfg.source.topics == ("in",)
    assert same.bootstrap == ("k1:9092", "k2:9093") and same.sasl_plain_password == "secret"
    assert other.bootstrap == ("other:9092",) and other.security_protocol == "SASL_SSL"
    assert isinstance(cfg.dead_letter, KafkaDeadLetterConfig) and cfg.dead_letter.bootstrap == same.bootstrap
    assert same.producer_kwargs()["compression_type"] is None
    assert same.producer_kwargs()["bootstrap_servers"] == ["k1:9092", "k2:9093"]
    assert cfg.to_dict()["source"]["sasl_plain_password"] == "***"
    assert cfg.to_dict(redact=False)["sink"][0]["sasl_plain_password"] == "secret"
    assert list(cfg.to_dict()["sink"][0])[0] == "type"


def test_embedded_defaults(tmp_path: Path) -> None:
    cfg = load(tmp_path, """
        [embedded]
        replay = "sample.jsonl"
        [source]
        type = "kafka"
        [[sink]]
        type = "kafka"
        topic = "scores"
    """)
    assert cfg.embedded == EmbeddedConfig(replay="sample.jsonl")
    assert cfg.source.bootstrap == ("embedded",) and cfg.source.topics == ("reviews",)
    assert cfg.sinks[0].embedded  # kafka sinks follow the source to the embedded broker
    # bootstrap = "embedded" without [embedded]: the defaults
    cfg = load(tmp_path, KAFKA.replace('"localhost:9092"', '"embedded"'))
    assert cfg.embedded == EmbeddedConfig()


def test_replay_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sample = tmp_path / "mine.jsonl"
    sample.write_text('{"doc_id": "1", "text": "fine"}\n')
    assert EmbeddedConfig(replay=str(sample)).replay_file() == sample
    assert EmbeddedConfig().replay_file() is None
    monkeypatch.setattr(config_module, "SAMPLES_DIR", tmp_path)
    assert EmbeddedConfig(replay="mine").replay_file() == sample
    with pytest.raises(ConfigError, match=r"embedded.replay = 'nope' is neither a file nor a bundled sample "
                                          r"\(bundled: mine\)"):
        EmbeddedConfig(replay="nope").replay_file()


# -- file-level errors --------------------------------------------------------------------------------------------
def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: no such config file"):
        load_config(tmp_path / "nope.toml", environ={})


def test_invalid_toml(tmp_path: Path) -> None:
    assert "not valid TOML" in error(tmp_path, "[source\n")


@pytest.mark.parametrize(("text", "expected"), [
    (KAFKA + "[sourse]\n", "unknown section [sourse] (did you mean [source]?); allowed: source, model, batch, sink"),
    (KAFKA + "[model]\npath = 'default'\n[model.extra]\n", "unknown key model.extra in [model]"),
    ("source = 3\n[[sink]]\ntype='stdout'\n", "source = 3 is not allowed; expected a table [source]"),
    ("[source]\ntype='jsonl'\npath='-'\n[sink]\ntype='stdout'\n", "write [[sink]], not [sink]"),
    ("sink = [1]\n[source]\ntype='jsonl'\npath='-'\n", "sink = [1] is not allowed; expected [[sink]] tables"),
    ("[[sink]]\ntype = 'stdout'\n", 'missing section [source]; add one with type = "kafka"'),
    ("[source]\ntype='jsonl'\npath='-'\n", "missing [[sink]]: at least one sink is required"),
])
def test_structure_errors(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in error(tmp_path, text)


# -- key and value errors -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("change", "expected"), [
    # types
    ("source.max_poll_records = '500'", "source.max_poll_records = '500' is not allowed; expected an integer >= 1 "
                                        "(got a string)"),
    ("source.max_poll_records = 2.5", "expected an integer >= 1 (got a float)"),
    ("batch.max_docs = true", "batch.max_docs = True is not allowed; expected an integer >= 1 (got a boolean)"),
    ("model.attention = 'yes'", "model.attention = 'yes' is not allowed; expected true or false"),
    ("source.topics = ['a', 3]", "source.topics = ['a', 3] is not allowed; expected Kafka topic names (each 1-249"),
    ("source.group_id = ''", "source.group_id = '' is not allowed; expected a non-empty string"),
    ("state.dir = 5", "state.dir = 5 is not allowed; expected a path (string) (got an integer)"),
    ("source.bootstrap = 9092", "source.bootstrap = 9092 is not allowed; expected \"host:port\""),
    ("batch = 5", "batch = 5 is not allowed; expected a table [batch]"),
    # bounds and choices
    ("batch.max_docs = 0", "batch.max_docs = 0 is not allowed; expected an integer >= 1"),
    ("batch.max_wait_ms = -1", "expected an integer >= 0"),
    ("metrics.port = 70000", "metrics.port = 70000 is not allowed; expected an integer >= 0 and <= 65535"),
    ("source.auto_offset_reset = 'smallest'", "source.auto_offset_reset = 'smallest' is not allowed; expected "
                                              'one of "earliest", "latest"'),
    ("model.device = 'gpu'", 'model.device = \'gpu\' is not allowed; expected one of "auto", "cpu", "cuda", '
                             '"reference"'),
    ("metrics.dashboard = 'yes'", "metrics.dashboard = 'yes' is not allowed; expected true, false or \"auto\""),
    ("source.type = 'kafkaa'", 'source.type = \'kafkaa\' is not allowed; expected one of "kafka", "arrow", '
                               '"parquet", "jsonl"'),
    ("source.topics = ['has space']", "expected Kafka topic names (each 1-249 of [A-Za-z0-9._-])"),
    ("source.bootstrap = 'nohost'", "source.bootstrap = 'nohost' is not allowed"),
    ("source.bootstrap = 'h:99999'", "source.bootstrap = 'h:99999' is not allowed"),
    ("source.bootstrap = ['embedded', 'h:1']", "source.bootstrap = ['embedded', 'h:1'] is not allowed"),
    ("source.pattern = 'in.*'", "source.pattern = 'in.*' is not allowed; expected no pattern when source.topics is "
                                "set (one or the other)"),
    # unknown keys
    ("source.group = 'x'", "unknown key source.group in a kafka source (did you mean 'group_id'?); allowed: "),
    ("model.name = 'x'", "unknown key model.name in [model]; allowed: attention, device, path, scorers, threads"),
])
def test_value_errors(tmp_path: Path, change: str, expected: str) -> None:
    data = tomllib.loads(KAFKA)
    dotted, _, value = change.partition(" = ")
    section, _, key = dotted.partition(".")
    parsed = tomllib.loads(f"v = {value}")["v"]
    if key:
        data.setdefault(section, {})[key] = parsed
    else:
        data[section] = parsed
    text = "\n".join(_toml_lines(data))
    assert expected in error(tmp_path, text)


def _toml_lines(data: dict) -> list[str]:
    lines = [f"{k} = {_toml(v)}" for k, v in data.items() if not isinstance(v, dict | list) or
             (isinstance(v, list) and not all(isinstance(x, dict) for x in v))]
    for k, v in data.items():
        if isinstance(v, dict):
            lines += [f"[{k}]"] + [f"{kk} = {_toml(vv)}" for kk, vv in v.items()]
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for table in v:
                lines += [f"[[{k}]]"] + [f"{kk} = {_toml(vv)}" for kk, vv in table.items()]
    return lines


def _toml(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return repr(v)


def test_pattern_must_be_a_regex(tmp_path: Path) -> None:
    msg = error(tmp_path, KAFKA.replace('topics = ["in"]', 'pattern = "(unclosed"'))
    assert "source.pattern = '(unclosed' is not allowed; expected a Python regular expression" in msg


def test_sink_errors_name_the_index(tmp_path: Path) -> None:
    two = KAFKA + '[[sink]]\ntype = "kafka"\ntopic = "out"\ncompresion = "gzip"\n'
    assert "unknown key sink[1].compresion in a kafka sink (did you mean 'compression'?)" in error(tmp_path, two)
    bad = KAFKA + '[[sink]]\ntype = "kafka"\ntopic = "out"\ncompression = "brotli"\n'
    assert ('sink[1].compression = \'brotli\' is not allowed; expected one of "none", "gzip", "snappy", "lz4", '
            '"zstd"') in error(tmp_path, bad)
    assert "sink[1].acks = True is not allowed; expected one of 0, 1, -1, \"all\"" in error(
        tmp_path, KAFKA + '[[sink]]\ntype = "kafka"\ntopic = "out"\nacks = true\n')
    msg = error(tmp_path, KAFKA + '[[sink]]\ntype="kafka"\n')
    assert "missing key sink[1].topic (required for a kafka sink)" in msg
    assert "missing key sink[1].type; expected one of" in error(tmp_path, KAFKA + "[[sink]]\npath = 'x'\n")
    msg = error(tmp_path, KAFKA + "[[sink]]\ntype='stdout'\npath='x'\n")
    assert "unknown key sink[1].path in a stdout sink" in msg


def test_missing_required_keys(tmp_path: Path) -> None:
    msg = error(tmp_path, "[source]\ntype = 'parquet'\n[[sink]]\ntype = 'stdout'\n")
    assert "missing key source.path (required for a parquet source)" in msg
    msg = error(tmp_path, "[source]\n[[sink]]\ntype = 'stdout'\n")
    assert 'missing key source.type; expected one of "kafka", "arrow", "parquet", "jsonl"' in msg
    msg = error(tmp_path, KAFKA.replace('topics = ["in"]', ""))
    assert "missing key source.topics (or source.pattern) for a kafka source" in msg
    msg = error(tmp_path, KAFKA + "[dead_letter]\ntype = 'kafka'\n")
    assert "missing key dead_letter.topic (required for a kafka dead-letter)" in msg


@pytest.mark.parametrize(("extra", "expected"), [
    ("[source]\ntype='kafka'\ntopics=['in']\nsession_timeout_ms=6000\nheartbeat_interval_ms=6000\n",
     "source.heartbeat_interval_ms = 6000 is not allowed; expected less than source.session_timeout_ms (6000)"),
    ("[embedded]\nbroker='noida'\n[source]\ntype='kafka'\nsession_timeout_ms=3000\nheartbeat_interval_ms=1000\n",
     "source.session_timeout_ms = 3000 is not allowed; expected >= 6000 with the noida embedded broker"),
    ("[embedded]\nbroker='tansu'\ndata_dir='d'\n[source]\ntype='kafka'\n",
     "embedded.data_dir = 'd' is not allowed; expected no data_dir with broker = \"tansu\""),
    ("[embedded]\n[source]\ntype='jsonl'\npath='-'\n", "[embedded] is unused with a jsonl source"),
    ("[embedded]\n[source]\ntype='kafka'\nbootstrap='k:9092'\ntopics=['in']\n",
     "[embedded] is unused with source.bootstrap = 'k:9092'"),
    ("[embedded]\nreplay='s.jsonl'\n[source]\ntype='kafka'\ntopics=['other']\n",
     "embedded.topic = 'reviews' is not allowed; expected a topic the source reads"),
    ("[source]\ntype='parquet'\npath='-'\n", "source.path = '-' is not allowed; expected a Parquet file"),
    ("[source]\ntype='kafka'\ntopics=['in']\nsecurity_protocol='SASL_SSL'\n",
     "missing key source.sasl_mechanism (required with security_protocol = 'SASL_SSL')"),
    ("[source]\ntype='kafka'\ntopics=['in']\nsasl_mechanism='PLAIN'\n",
     "source.sasl_mechanism = 'PLAIN' is not allowed; expected no SASL mechanism unless"),
])
def test_cross_field_rules(tmp_path: Path, extra: str, expected: str) -> None:
    assert expected in error(tmp_path, extra + "[[sink]]\ntype = 'stdout'\n")


@pytest.mark.parametrize(("sinks", "expected"), [
    ("[[sink]]\ntype='kafka'\ntopic='in'\n", "sink[0].topic = 'in' is not allowed; expected a topic the source "
                                             "does not read"),
    ("[[sink]]\ntype='stdout'\n[[sink]]\ntype='jsonl'\npath='-'\n",
     "sink[1].path = '-' is not allowed; expected an output of its own; sink[0].type already writes there"),
    ("[[sink]]\ntype='jsonl'\npath='o.jsonl'\n[[sink]]\ntype='jsonl'\npath='./o.jsonl'\n",
     "sink[1].path = './o.jsonl' is not allowed; expected an output of its own; sink[0].path already writes there"),
    ("[[sink]]\ntype='jsonl'\npath='dead-letter.jsonl'\n",
     "dead_letter.path = 'dead-letter.jsonl' is not allowed; expected an output of its own; sink[0].path"),
    ("[[sink]]\ntype='kafka'\ntopic='o'\nbootstrap='embedded'\n",
     "sink[0].bootstrap = 'embedded' is not allowed; expected a broker address"),
])
def test_output_conflicts(tmp_path: Path, sinks: str, expected: str) -> None:
    assert expected in error(tmp_path, "[source]\ntype='kafka'\nbootstrap='k:1'\ntopics=['in']\n" + sinks)


def test_a_pattern_that_matches_the_output_topic_is_a_loop(tmp_path: Path) -> None:
    msg = error(tmp_path, "[source]\ntype='kafka'\npattern='rev.*'\n[[sink]]\ntype='kafka'\ntopic='reviews-out'\n")
    assert "sink[0].topic = 'reviews-out' is not allowed; expected a topic the source does not read" in msg


def test_a_compression_codec_that_is_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka.codec, "has_lz4", lambda: False)
    lz4 = "[[sink]]\ntype='kafka'\ntopic='o'\ncompression='lz4'\n"
    assert load(tmp_path, KAFKA + lz4).sinks[1].compression == "lz4"  # librdkafka has every codec built in
    msg = error(tmp_path, KAFKA.replace("[source]\n", "[source]\nclient = 'kafka-python'\n") + lz4)
    assert "sink[1].compression = 'lz4' is not allowed; expected a codec kafka-python can use here: pip install lz4, " \
           'or choose "none", "gzip"' in msg


def test_long_values_are_shortened(tmp_path: Path) -> None:
    msg = error(tmp_path, KAFKA.replace('"in"', '"' + "x" * 500 + '"'))
    assert "..." in msg and len(msg) < 400


# -- environment overrides ----------------------------------------------------------------------------------------
def test_env_overrides(tmp_path: Path) -> None:
    cfg = load(tmp_path, KAFKA + "[[sink]]\ntype='kafka'\ntopic='out'\n", env={
        "STREAMSENT__SOURCE__BOOTSTRAP": "k1:9092,k2:9092",
        "STREAMSENT__SOURCE__TOPICS": "a,b",
        "STREAMSENT__SOURCE__GROUP_ID": "123",  # a string key keeps the text
        "STREAMSENT__SOURCE__MAX_POLL_RECORDS": "100",
        "STREAMSENT__SINK__1__TOPIC": "scores",
        "STREAMSENT__SINK__1__ACKS": "1",
        "STREAMSENT__SINK__2__TYPE": "jsonl",  # one past the last: a new sink
        "STREAMSENT__SINK__2__PATH": "out.jsonl",
        "streamsent__batch__max_docs": "7",  # names are case-insensitive
        "STREAMSENT__METRICS__DASHBOARD": "false",
        "STREAMSENT__MODEL__PATH": '"quoted"',
        "STREAMSENT_DATA": "/elsewhere",  # one underscore: not an override
        "STREAMSENT_TEST_BOOTSTRAP": "x",
    })
    src = cfg.source
    assert isinstance(src, KafkaSourceConfig)
    assert src.bootstrap == ("k1:9092", "k2:9092") and src.topics == ("a", "b") and src.group_id == "123"
    assert src.max_poll_records == 100 and cfg.batch.max_docs == 7 and cfg.metrics.dashboard is False
    assert cfg.model.path == "quoted"
    assert isinstance(cfg.sinks[1], KafkaSinkConfig) and (cfg.sinks[1].topic, cfg.sinks[1].acks) == ("scores", 1)
    assert cfg.sinks[1].bootstrap == ("k1:9092", "k2:9092")  # inherits the overridden source bootstrap
    assert cfg.sinks[2].type == "jsonl" and cfg.sinks[2].path == "out.jsonl"


def test_env_can_build_a_config_from_nothing(tmp_path: Path) -> None:
    cfg = load(tmp_path, "", env={"STREAMSENT__SOURCE__TYPE": "jsonl", "STREAMSENT__SOURCE__PATH": "-",
                                  "STREAMSENT__SINK__0__TYPE": "stdout"})
    assert cfg.source == FileSourceConfig(type="jsonl", path="-")


def test_load_config_reads_os_environ_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "p.toml").write_text(KAFKA)
    monkeypatch.setenv("STREAMSENT__BATCH__MAX_DOCS", "9")
    assert load_config(tmp_path / "p.toml").batch.max_docs == 9
    assert load_config(tmp_path / "p.toml", environ=None).batch.max_docs == 1024


@pytest.mark.parametrize(("env", "expected"), [
    ({"STREAMSENT__SOURCE__MAX_POLL_RECORDS": "many"},
     "source.max_poll_records = 'many' (from STREAMSENT__SOURCE__MAX_POLL_RECORDS) is not allowed; expected an "
     "integer >= 1"),
    ({"STREAMSENT__SOURCE__BOOTSTRAPP": "k:1"},
     "unknown key source.bootstrapp (from STREAMSENT__SOURCE__BOOTSTRAPP) in a kafka source (did you mean "
     "'bootstrap'?)"),
    ({"STREAMSENT__SOURCES__TOPICS": "a"},
     "environment variable STREAMSENT__SOURCES__TOPICS: unknown section 'sources' (did you mean "
     "STREAMSENT__SOURCE__...?)"),
    ({"STREAMSENT__SOURCE": "x"}, "environment variable STREAMSENT__SOURCE is not of the form "
                                  "STREAMSENT__SOURCE__KEY"),
    ({"STREAMSENT__SINK__TOPIC": "x"}, "environment variable STREAMSENT__SINK__TOPIC is not of the form "
                                       "STREAMSENT__SINK__<index>__KEY"),
    ({"STREAMSENT__SINK__5__TYPE": "stdout"}, "environment variable STREAMSENT__SINK__5__TYPE: there are 1 sinks; "
                                              "an override can change sink[0..0] or add sink[1]"),
    ({"STREAMSENT__SOURCE____X": "1"}, "environment variable STREAMSENT__SOURCE____X: empty name part"),
    ({"STREAMSENT__SINK__0__TYPE": "kafka"}, "missing key sink[0].topic (required for a kafka sink)"),
    ({"STREAMSENT__SINK__0__TYPE": "console"},
     "sink[0].type = 'console' (from STREAMSENT__SINK__0__TYPE) is not allowed; expected one of \"kafka\""),
])
def test_env_errors_name_the_variable(tmp_path: Path, env: dict[str, str], expected: str) -> None:
    assert expected in error(tmp_path, KAFKA, env)
