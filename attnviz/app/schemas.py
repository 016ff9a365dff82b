"""Request and response models of the JSON API (contract v1 in DESIGN.md).

Requests are strict (no type coercion, unknown fields refused) and every check says what
to change. Limits stated here are the contract's; the settings may lower them, which the
routes check. Matrices: ``attention[t][s]`` is the weight target token ``t`` (a row,
``target_tokens[t]``) gives source token ``s`` (a column, ``source_tokens[s]``).
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from attnviz.app.settings import (
    MAX_BATCH_TEXTS,
    MAX_BEAM_SIZE,
    MAX_LENGTH,
    MAX_TEXT_CHARS,
    MAX_TOP_K,
)

EXAMPLE_TEXT = "The little girl ate the red apple."
_ALLOWED_CONTROLS = frozenset("\t\n\r")


def _char_name(ch: str) -> str:
    if ch == "\x00":
        return "NUL (U+0000)"
    try:
        return f"U+{ord(ch):04X} ({unicodedata.name(ch)})"
    except ValueError:
        return f"U+{ord(ch):04X}"


def check_text(value: str, what: str = "text") -> str:
    """Trimmed, NFC-normalised text; ValueError saying what to change when it is empty,
    too long, or holds control characters, NUL or lone surrogates (invalid Unicode).

    Emoji, right-to-left scripts and other symbols are accepted: the model reads words it
    does not know as ``<unk>`` and the response lists them in ``unknown_source_tokens``.
    """
    text = value.strip()
    if not text:
        raise ValueError(
            f"{what} is empty or only white space: send 1 to {MAX_TEXT_CHARS} characters"
        )
    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(
            f"{what} has {len(text)} characters after trimming, more than the limit of "
            f"{MAX_TEXT_CHARS}: shorten it, or split it into sentences and send them to "
            "POST /api/translate/batch"
        )
    for i, ch in enumerate(text):
        if ch.isprintable() or ch in _ALLOWED_CONTROLS:
            continue
        category = unicodedata.category(ch)
        if category == "Cc":
            raise ValueError(
                f"{what} contains the control character {_char_name(ch)} at position {i}: "
                "remove it (only tabs and line breaks are allowed)"
            )
        if category == "Cs":
            raise ValueError(
                f"{what} contains a lone surrogate {_char_name(ch)} at position {i}, which "
                "is not valid Unicode: send the text as UTF-8 without \\ud800-\\udfff escapes"
            )
    return unicodedata.normalize("NFC", text)


def _check_text(value: str) -> str:
    return check_text(value)


def _check_target(value: str) -> str:
    return check_text(value, "target")


def _check_prefix(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None  # an empty what-if box means no prefix
    return check_text(value, "forced_prefix")


def _integral(value: object) -> object:
    """JSON has one number type: 3.0 is the integer 3 (2.5, "3" and true stay refused)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


_TEXT_SCHEMA = {"minLength": 1, "maxLength": MAX_TEXT_CHARS}
Int = Annotated[int, BeforeValidator(_integral)]

Text = Annotated[
    str,
    AfterValidator(_check_text),
    Field(
        description=f"text to translate: 1..{MAX_TEXT_CHARS} characters after trimming, "
        "no control characters. Invisible format characters (zero-width spaces, byte order "
        "marks, bidirectional controls) are removed, as `normalized` counts. A text in which "
        "the model knows no word at all (another language, only emoji) is refused with a 422",
        json_schema_extra=_TEXT_SCHEMA,
        examples=[EXAMPLE_TEXT],
    ),
]
# constraints before the validator, so that the JSON schema states them
SourcePosition = Annotated[int, Field(ge=0, le=MAX_TEXT_CHARS), BeforeValidator(_integral)]
TargetLength = Annotated[int, Field(ge=1, le=MAX_LENGTH), BeforeValidator(_integral)]


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


# the names a model can have (the registry loads no other); a name that does not match is
# answered 400 when it looks like a path, else 404 (there is no such model)
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$"
ModelName = Annotated[
    str, Field(min_length=1, max_length=100, json_schema_extra={"pattern": MODEL_NAME_PATTERN})
]


class _ModelChoice(_Request):
    model: ModelName | None = Field(
        default=None,
        description="a name from GET /api/models (letters, digits and `._+-`, no `/` or `:`); "
        "null = the default model",
        examples=["en-fr-additive"],
    )


class _DecodeOptions(_ModelChoice):
    """Decoding options shared by /api/translate and /api/translate/batch."""

    beam_size: Int = Field(
        default=1, ge=1, le=MAX_BEAM_SIZE, description="1 = greedy; K > 1 = beam search"
    )
    n_best: Int = Field(
        default=1,
        ge=1,
        le=MAX_BEAM_SIZE,
        description="hypotheses returned (1..beam_size), best first, in `hypotheses`",
    )
    max_length: TargetLength | None = Field(
        default=None,
        description="most target tokens (the end token included); null = 2 x source + 10",
    )
    top_k: Int = Field(
        default=0, ge=0, le=MAX_TOP_K, description="candidate words reported for every step"
    )
    length_penalty: float = Field(
        default=1.0,
        ge=0.0,
        le=5.0,
        allow_inf_nan=False,
        description="beam ranking: score / length ** length_penalty (0 = raw log-probability)",
    )
    forced_prefix: Annotated[str | None, AfterValidator(_check_prefix)] = Field(
        default=None,
        max_length=4 * MAX_TEXT_CHARS,
        description="what-if: target-language words forced first, then decoding is free",
        examples=["La petite"],
    )
    masked_source: list[SourcePosition] | None = Field(
        default=None,
        max_length=MAX_TEXT_CHARS + 1,
        description="what-if: source positions (0-based columns of `attention`, the end "
        "token included) the decoder may not attend to; at least one must stay free. The "
        "positions a text has are known once it is tokenized: one beyond its end token (the "
        "last column) is refused with a 422",
        examples=[[1]],
    )
    masked_words: list[SourcePosition] | None = Field(
        default=None,
        max_length=MAX_TEXT_CHARS + 1,
        description="what-if: source words (0-based indices of `source_words`, the end token "
        "included) the decoder may not attend to: every piece of each word is masked "
        "(added to `masked_source`)",
        examples=[[1]],
    )
    include_beam: bool = Field(
        default=False, description="return the beam search tree in `beam` (beam_size > 1)"
    )
    include_heads: bool = Field(
        default=False,
        description="return every layer's and head's matrices in `heads` (multi-head and "
        "Transformer models; null for the others)",
    )
    include_saliency: bool = Field(
        default=False,
        description="return `saliency`, the input x gradient attribution of each output "
        "token to the source tokens, and its rank correlation with the attention",
    )
    shortlist: bool = Field(
        default=False,
        description="score only the model's lexical shortlist, the target words that go with "
        "the source words (as Marian's shortlist does): faster, probabilities normalised over "
        "it; 422 for a model without one (`shortlist` in GET /api/models)",
    )
    int8: bool = Field(
        default=False,
        description="score with an int8 copy of the output layer (as CTranslate2's int8 "
        "mode does): faster for the RNN models, about even for the Transformer; "
        "probabilities within a few hundredths, and now and then a different word; the "
        "attention is computed in fp32 either way. With `shortlist` too, the int8 layer "
        "scores every word and the shortlist's are kept (correct, without the shortlist's "
        "saving). 422 when the service runs its models on a GPU",
    )

    @field_validator("n_best")
    @classmethod
    def _n_best_within_beam(cls, n_best: int, info: ValidationInfo) -> int:
        beam_size = info.data.get("beam_size")
        if isinstance(beam_size, int) and n_best > beam_size:
            raise ValueError(
                f"n_best ({n_best}) cannot exceed beam_size ({beam_size}): beam search finds "
                f"beam_size hypotheses; raise beam_size to at least {n_best} or lower n_best"
            )
        return n_best


class TranslateRequest(_DecodeOptions):
    """One sentence to translate."""

    text: Text

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"text": EXAMPLE_TEXT, "model": "en-fr-additive", "top_k": 3},
                {"text": EXAMPLE_TEXT, "beam_size": 5, "n_best": 3, "include_beam": True},
                {"text": EXAMPLE_TEXT, "forced_prefix": "La petite", "masked_source": [1]},
            ]
        }
    )


class BatchTranslateRequest(_DecodeOptions):
    """Several sentences, the same options for all; results come back in input order."""

    texts: list[Text] = Field(
        min_length=1,
        max_length=MAX_BATCH_TEXTS,
        description=f"1..{MAX_BATCH_TEXTS} texts",
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"texts": [EXAMPLE_TEXT, "Is the Swiss bed pink?"], "top_k": 2}]
        }
    )


class AlignRequest(_ModelChoice):
    """A text and a given translation: how the model reads that translation (forced
    decoding)."""

    text: Text
    target: Annotated[
        str,
        AfterValidator(_check_target),
        Field(
            description="the translation to read, in the model's target language; a word "
            "the model does not know (a word-level model's vocabulary; subword models read any "
            "word) is refused with a 422 naming it",
            json_schema_extra=_TEXT_SCHEMA,
            examples=["La petite fille a mangé la pomme rouge."],
        ),
    ]
    top_k: Int = Field(default=0, ge=0, le=MAX_TOP_K)
    masked_source: list[SourcePosition] | None = Field(
        default=None,
        max_length=MAX_TEXT_CHARS + 1,
        description="source positions the decoder may not attend to (as in /api/translate): "
        "one beyond the text's end token is refused with a 422",
    )
    masked_words: list[SourcePosition] | None = Field(default=None, max_length=MAX_TEXT_CHARS + 1)
    include_heads: bool = False
    include_saliency: bool = False

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "text": EXAMPLE_TEXT,
                    "target": "La petite fille a mangé la pomme rouge.",
                    "model": "en-fr-additive",
                }
            ]
        }
    )


# -- responses -----------------------------------------------------------------------------


class Candidate(BaseModel):
    token: str
    prob: float


class Step(BaseModel):
    """One target token: its probability, the top-k candidates of its step, and whether
    it was forced (prefix or align)."""

    token: str
    prob: float
    top_k: list[Candidate] = Field(default_factory=list)
    forced: bool = False


Matrix4 = list[list[list[list[float]]]]


class HeadViews(BaseModel):
    """Every head's attention, layer by layer (asked for with `include_heads`)."""

    layers: int
    heads: int
    alignment_layer: int = Field(
        description="the layer whose head average is `attention` (0-based)"
    )
    cross: Matrix4 = Field(
        description="(layer, head, target, source): rows = target_tokens, columns = "
        "source_tokens, each row sums to 1"
    )
    encoder_self: Matrix4 | None = Field(
        default=None, description="Transformer: (layer, head, source, source)"
    )
    decoder_self: Matrix4 | None = Field(
        default=None,
        description="Transformer: (layer, head, target, decoder input), causal; the columns "
        "are `decoder_tokens`",
    )
    decoder_tokens: list[str] | None = Field(
        default=None, description="`<s>` then target_tokens without the last"
    )


class Word(BaseModel):
    """A word and the pieces it covers: ``source_tokens[start:end]`` (or target_tokens)."""

    word: str
    start: int = Field(ge=0)
    end: int = Field(ge=1)


class Hypothesis(BaseModel):
    model: str
    source_tokens: list[str] = Field(
        description="the columns of every attention matrix (the end token `</s>` last)"
    )
    target_tokens: list[str] = Field(
        description="the rows of every attention matrix (`</s>` last when finished)"
    )
    translation: str = Field(description="the detokenized translation, end token removed")
    attention: list[list[float]] | None = Field(
        description="rows = target_tokens, columns = source_tokens, each row sums to 1; "
        "null for a model without attention"
    )
    alignment: str = Field(
        description="Pharaoh links `i-j`: 0-based source word i, target word j (argmax of "
        "each row of `word_attention`, end token excluded)",
        examples=["0-0 1-1 2-2"],
    )
    steps: list[Step]
    score: float = Field(description="total log-probability")
    normalized_score: float = Field(description="what the n-best list is ranked by")
    finished: bool = Field(description="the output ended with `</s>` (not the length limit)")
    unknown_source_tokens: list[int] = Field(
        description="indices into source_tokens of words the model does not know"
    )
    source_words: list[Word] = Field(
        description="the source words (whitespace-separated, as typed, after normalisation) "
        "with the span of source_tokens each covers; `</s>` is the last word"
    )
    target_words: list[Word] = Field(
        description="the target words with the span of target_tokens each covers (`</s>` "
        "last when finished)"
    )
    word_attention: list[list[float]] | None = Field(
        description="rows = target_words, columns = source_words: source pieces summed, "
        "target pieces averaged, each row sums to 1; null without attention"
    )
    heads: HeadViews | None = Field(
        default=None, description="every layer's and head's matrices, when asked"
    )
    saliency: list[list[float]] | None = Field(
        default=None,
        description="when asked: |input x gradient| of each output token (rows) over the "
        "source tokens (columns), each row summing to 1",
    )
    saliency_correlation: list[float | None] | None = Field(
        default=None,
        description="per target token, Spearman's rank correlation of its attention row with "
        "its saliency row (null where undefined)",
    )


class BeamNode(BaseModel):
    id: int
    step: int
    token: str
    token_id: int
    parent: int | None
    score: float | None = Field(description="cumulative log-probability; null = impossible")
    logprob: float | None
    kept: bool
    finished: bool


class BeamTree(BaseModel):
    beam_size: int
    nodes: list[BeamNode]
    paths: list[list[int]] = Field(description="node ids of each returned hypothesis")


class Timing(BaseModel):
    model_config = ConfigDict(extra="allow")

    total: float = Field(description="milliseconds from reading the request to the answer")
    queue: float = Field(default=0.0, description="waiting to be batched and for a worker")
    inference: float = Field(default=0.0, description="the model batch this request was in")


class Normalization(BaseModel):
    """What the normalisation rule (``attnviz.model.normalize``, the same for every model
    and the training data) changed in a text before the model read it."""

    removed_invisible: int = Field(
        default=0,
        ge=0,
        description="invisible characters removed: format characters (zero-width spaces "
        "and joiners, byte order marks, soft hyphens, bidirectional controls such as U+202E) "
        "and control characters",
    )
    spaces: int = Field(
        default=0, ge=0, description="other space characters (no-break, thin, ...) read as ' '"
    )
    apostrophes: int = Field(default=0, ge=0, description="typographic apostrophes read as '")


class TranslateResponse(Hypothesis):
    hypotheses: list[Hypothesis] = Field(
        default_factory=list, description="the n-best list, best first, when n_best > 1"
    )
    beam: BeamTree | None = None
    normalized: Normalization = Field(description="what normalisation changed in the text")
    timing_ms: Timing


class BatchTranslateResponse(BaseModel):
    results: list[TranslateResponse] = Field(description="one per text, in input order")
    timing_ms: Timing


class AlignResponse(Hypothesis):
    normalized: Normalization = Field(description="what normalisation changed in the text")
    target_normalized: Normalization = Field(description="what normalisation changed in the target")
    timing_ms: Timing


class Metrics(BaseModel):
    """Test-set metrics (sacrebleu BLEU and chrF, AER of the attention); more keys in the
    card of GET /api/models/{name}."""

    model_config = ConfigDict(extra="allow")

    bleu: float | None = None
    chrf: float | None = None
    aer: float | None = None


class ModelSummary(BaseModel):
    name: str
    source_lang: str
    target_lang: str
    architecture: str
    attention: str = Field(description="attention mechanism (`none` = no attention)")
    has_attention: bool
    attention_heads: int | None = None
    layers: int | None = Field(default=None, description="Transformer layers (each side)")
    parameters: int
    metrics: Metrics
    default: bool
    shortlist: bool = Field(description="has a lexical shortlist (the `shortlist` option)")


class ModelsResponse(BaseModel):
    models: list[ModelSummary]
    default_model: str | None


class ModelCard(ModelSummary):
    """A model's card (vocabularies left out)."""

    config: dict[str, Any]
    vocab_sizes: dict[str, int]
    bleu_by_length: list[dict[str, Any]] | None = None
    curve: list[dict[str, Any]] = Field(default_factory=list)
    training_seconds: float | None = None
    steps: int | None = None
    valid_bleu: float | None = None
    data: dict[str, Any] | None = None
    shortlist_info: dict[str, Any] | None = Field(
        default=None,
        description="how the lexical shortlist was built: target words kept per source word "
        "(`per_source`), frequent words always kept (`common`), training pairs counted",
    )


class FailedModel(BaseModel):
    folder: str
    name: str | None = Field(
        default=None, description="the model's name, when its card could be read"
    )
    reason: str


class ModelWarning(BaseModel):
    model: str
    folder: str
    warning: str = Field(description="what is wrong, and what the model serves without")


class HealthResponse(BaseModel):
    status: Literal["ok", "degraded", "unavailable"] = Field(
        description="ok: every model folder loaded whole; degraded: some failed (see "
        "`failed`) and the others serve, or a model serves without a broken optional file "
        "(see `warnings`); unavailable: no model loaded"
    )
    device: str
    models: list[str]
    default_model: str | None
    failed: list[FailedModel]
    warnings: list[ModelWarning] = Field(
        default_factory=list,
        description="models that serve without an optional file that is broken (the "
        "shortlist: their `shortlist` is false), and why",
    )
    micro_batching: bool
    uptime_s: float


class ErrorMessage(BaseModel):
    detail: str


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorResponse(BaseModel):
    detail: list[ValidationIssue]
