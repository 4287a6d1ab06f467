"""A chat completion answer as the OpenAI SDK's ``ChatCompletion`` would dump it, built without it.

LiteLLM parses a provider's answer with the SDK (``construct_type`` into ``ChatCompletion``, about
0.1 ms for a one-choice answer) and at once dumps it back to a dict (``model_dump``), which is all
it uses. The model is the contract clients see: it adds every field the SDK declares that the
provider left out, as ``null`` (``refusal``, ``service_tier``, ``moderation``…), so dropping it
would change answers. ``ChatCompletionAnswer.build`` produces the same dict directly from the
SDK's own field declarations, read once from its models.

It only does so when every value already has the type the SDK declares for it (a ``str`` where it
declares ``str``, an object where it declares a model, a known discriminator…): then the SDK's
loose construction and its validation both keep each value as it is, and the result is equal,
key order included. Any other answer (a value of another type, a missing required field, a field
type not mapped here) is parsed by the SDK exactly as before.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import httpx
from openai import BaseModel
from openai._models import construct_type
from openai.types.chat import ChatCompletion


class _NotCanonicalError(Exception):
    """A value the SDK would not keep as it is: the answer goes the SDK's way."""


@dataclass(frozen=True, slots=True)
class _Scalar:
    types: tuple[type, ...]
    is_float: bool = False


@dataclass(frozen=True, slots=True)
class _ListOf:
    item: _Kind


@dataclass(frozen=True, slots=True)
class _Model:
    fields: tuple[tuple[str, _Kind], ...]
    required: frozenset[str]
    names: frozenset[str]


@dataclass(frozen=True, slots=True)
class _Tagged:
    """A union of models told apart by a discriminator field (the SDK's ``PropertyInfo``)."""

    field: str
    variants: dict[str, _Model]


@dataclass(frozen=True, slots=True)
class _Unmapped:
    """A declared type not mapped here: any value other than ``null`` goes the SDK's way."""


_Kind = _Scalar | _ListOf | _Model | _Tagged | _Unmapped


def _without_none(annotation: Any) -> Any:
    """``Optional[X]`` → ``X``; ``_fill_model`` accepts ``null`` for every field, as the SDK does."""
    if get_origin(annotation) in (Union, types.UnionType):
        rest = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


def _discriminator(metadata: tuple[Any, ...]) -> str | None:
    for item in metadata:
        field = getattr(item, "discriminator", None)
        if isinstance(field, str):
            return field
    return None


def _kind(annotation: Any, metadata: tuple[Any, ...] = ()) -> _Kind:
    annotation = _without_none(annotation)
    origin = get_origin(annotation)
    if origin is Annotated:
        inner, *extra = get_args(annotation)
        return _kind(inner, (*metadata, *extra))
    if annotation is str or (origin is Literal and all(isinstance(arg, str) for arg in get_args(annotation))):
        return _Scalar((str,))
    if annotation is int:
        return _Scalar((int,))
    if annotation is float:
        return _Scalar((float, int), is_float=True)
    if annotation is bool:
        return _Scalar((bool,))
    if origin is list:
        return _ListOf(_kind(get_args(annotation)[0]))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _model(annotation)
    if origin in (Union, types.UnionType):
        return _tagged(get_args(annotation), _discriminator(metadata))
    return _Unmapped()


def _tagged(variants: tuple[Any, ...], field: str | None) -> _Kind:
    if field is None:
        return _Unmapped()
    mapping: dict[str, _Model] = {}
    for variant in variants:
        if not (isinstance(variant, type) and issubclass(variant, BaseModel)):
            return _Unmapped()
        tag_field = variant.model_fields.get(field)
        tag = get_args(tag_field.annotation) if tag_field is not None else ()
        if len(tag) != 1 or not isinstance(tag[0], str):
            return _Unmapped()
        mapping[tag[0]] = _model(variant)
    return _Tagged(field, mapping)


def _model(cls: type[BaseModel]) -> _Model:
    """The shape of ``cls``; a ``TypeError`` for a model whose dump this module cannot reproduce:
    one that drops extra fields, renames one (an alias), or fills an absent one with other than
    ``null``."""
    fields = cls.model_fields
    if cls.model_config.get("extra") != "allow" or any(
        f.alias not in (None, name) or (not f.is_required() and (f.default is not None or f.default_factory))
        for name, f in fields.items()
    ):
        raise TypeError(f"{cls.__name__}: not a model whose dump is mapped here")
    return _Model(
        fields=tuple((name, _kind(f.annotation, tuple(f.metadata))) for name, f in fields.items()),
        required=frozenset(name for name, f in fields.items() if f.is_required()),
        names=frozenset(fields),
    )


def _fill(kind: _Kind, value: object) -> object:
    if isinstance(kind, _Scalar):
        if type(value) not in kind.types:  # exact types: a bool is no int here, as for the SDK's validation
            raise _NotCanonicalError
        if kind.is_float and type(value) is int:
            if float(value) != value:
                raise _NotCanonicalError
            return float(value)
        return value
    if isinstance(kind, _ListOf):
        if type(value) is not list:
            raise _NotCanonicalError
        return [_fill(kind.item, item) for item in value]
    if isinstance(kind, _Model):
        return _fill_model(kind, value)
    if isinstance(kind, _Tagged):
        tag = value.get(kind.field) if type(value) is dict else None
        variant = kind.variants.get(tag) if isinstance(tag, str) else None
        if variant is None:
            raise _NotCanonicalError
        return _fill_model(variant, value)
    raise _NotCanonicalError


def _fill_model(model: _Model, value: object) -> dict[str, object]:
    if type(value) is not dict or not model.required.issubset(value):
        raise _NotCanonicalError
    filled: dict[str, object] = {}
    for name, kind in model.fields:
        field_value = value.get(name)
        filled[name] = None if field_value is None else _fill(kind, field_value)
    for name, extra in value.items():
        if name not in model.names:
            filled[name] = _copy_json(extra)
    return filled


def _copy_json(value: object) -> object:
    """Fresh containers, as the SDK's dump makes for a field it does not declare."""
    if type(value) is dict:
        return {key: _copy_json(item) for key, item in value.items()}
    if type(value) is list:
        return [_copy_json(item) for item in value]
    return value


def _chat_completion_shape() -> _Model | None:
    try:
        return _model(ChatCompletion)
    except TypeError:  # an SDK whose models are not mapped here: every answer takes its own parse
        return None


_CHAT_COMPLETION = _chat_completion_shape()


def answer_as_sdk_dumps(data: object) -> dict[str, object] | None:
    """``ChatCompletion``'s ``model_dump()`` of ``data``, or ``None`` when only the SDK can tell."""
    if _CHAT_COMPLETION is None:
        return None
    try:
        return _fill_model(_CHAT_COMPLETION, data)
    except _NotCanonicalError:
        return None


class _BuiltAnswer:
    """What LiteLLM gets from ``parse()``: ``model_dump()`` is all it calls; anything else is
    answered by the SDK's own model, made on first use."""

    __slots__ = ("_data", "_dumped", "_model")

    def __init__(self, data: object, dumped: dict[str, object]) -> None:
        self._data = data
        self._dumped: dict[str, object] | None = dumped
        self._model: ChatCompletion | None = None

    def model_dump(self, **options: Any) -> dict[str, Any]:
        if options:
            return self.sdk_model().model_dump(**options)
        dumped, self._dumped = self._dumped, None
        return dumped if dumped is not None else (answer_as_sdk_dumps(self._data) or self.sdk_model().model_dump())

    def sdk_model(self) -> ChatCompletion:
        if self._model is None:
            self._model = construct_type(type_=ChatCompletion, value=self._data)  # type: ignore[assignment]
        assert self._model is not None
        return self._model

    def __getattr__(self, name: str) -> Any:
        if name in _BuiltAnswer.__slots__:  # not set yet: a copy being rebuilt
            raise AttributeError(name)
        return getattr(self.sdk_model(), name)


class ChatCompletionAnswer(ChatCompletion):
    """``cast_to`` for a chat completion: the SDK hands the decoded answer to ``build``."""

    @classmethod
    def build(cls, *, response: httpx.Response, data: object) -> Any:
        dumped = answer_as_sdk_dumps(data)
        if dumped is None:
            return construct_type(type_=ChatCompletion, value=data)
        return _BuiltAnswer(data, dumped)
