"""Which project a request belongs to, and where its traces go (Langfuse or the embedded store)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from proxy_core.config_files import LangfuseProject
from proxy_core.errors import NotFoundError
from proxy_core.services.auth import AuthProvider, Principal
from proxy_core.services.llm import LangfuseTarget

# The namespace (rollout keys, response cache, policies) of calls that name no project when none
# is the default. Empty, which no configured project id can be (ids are 1-256 characters): as
# "default" it shared rollouts, cached answers and policies with a project of that name.
UNCONFIGURED_PROJECT = ""


@dataclass(frozen=True, slots=True)
class ResolvedProject:
    """``store_id`` namespaces the rollout store; ``tracing`` is None when traces are off."""

    store_id: str
    tracing: LangfuseTarget | None


@dataclass(frozen=True, slots=True)
class ProjectTable:
    """The projects of one version of the secrets: never edited, replaced whole on a refresh.

    A target under ``UNCONFIGURED_PROJECT`` (an id no path can name) is where calls that name no
    project go when there is no default: the embedded trace store gives them one; with Langfuse
    there is none, and such calls go untraced.
    """

    targets: Mapping[str, LangfuseTarget]
    default: str | None

    @classmethod
    def of(
        cls, projects: Mapping[str, LangfuseProject], default_project_id: str | None, langfuse_host: str
    ) -> ProjectTable:
        targets = {
            project_id: LangfuseTarget(
                project_id=project_id,
                public_key=project.public_key,
                secret_key=project.secret_key.get_secret_value(),
                host=project.host or langfuse_host,
            )
            for project_id, project in projects.items()
        }
        return cls(targets, default_project_id)

    def shared_destinations(self) -> list[list[str]]:
        """Groups of projects whose traces go to one Langfuse project (same host and public key)."""
        groups: dict[tuple[str, str], list[str]] = {}
        for project_id, target in self.targets.items():
            groups.setdefault((target.host.rstrip("/"), target.public_key), []).append(project_id)
        return [projects for projects in groups.values() if len(projects) > 1]


class ProjectDirectory:
    """Looks projects up by id; an unknown id is a 404 that does not reveal the configured ones.

    It reads the table in force at each lookup, so projects and keys a refresh of the secrets
    brings (``services.secrets``) apply to the next request without rebuilding the services.
    """

    def __init__(self, table: Callable[[], ProjectTable]) -> None:
        self._table = table

    @property
    def tracing_enabled(self) -> bool:
        return bool(self._table().targets)

    def targets(self) -> Mapping[str, LangfuseTarget]:
        """Every traced project's destination, by project id (the table in force)."""
        return self._table().targets

    def project_at(self, host: str, public_key: str) -> str | None:
        """The project whose traces go to ``host`` with ``public_key`` (the first, if several share it)."""
        host = host.rstrip("/")
        for project_id, target in self._table().targets.items():
            if target.public_key == public_key and target.host.rstrip("/") == host:
                return project_id
        return None

    def effective_id(self, project_id: str | None) -> str | None:
        return project_id if project_id is not None else self._table().default

    def resolve(self, project_id: str | None) -> ResolvedProject:
        """The project named in the path, else the default; 404 for a name that is not configured."""
        table = self._table()
        if project_id is None:
            if table.default is None:
                return ResolvedProject(UNCONFIGURED_PROJECT, table.targets.get(UNCONFIGURED_PROJECT))
            project_id = table.default
        target = table.targets.get(project_id)
        if target is None:
            raise NotFoundError(
                f"Project {project_id!r} is not configured on this gateway.",
                param="project_id",
                code="project_not_found",
            )
        return ResolvedProject(project_id, target)


async def authorize(
    auth: AuthProvider, projects: ProjectDirectory, headers: Mapping[str, str], project_id: str | None
) -> tuple[Principal, ResolvedProject]:
    """Who is calling, and the project they named (or the default) if they may use it: 401/403/404."""
    principal = await auth.authenticate(headers)
    principal.require(projects.effective_id(project_id))
    return principal, projects.resolve(project_id)


def require_tracing(project: ResolvedProject) -> LangfuseTarget:
    """The project's Langfuse target, for features that read or write Langfuse; 404 without one."""
    if project.tracing is None:
        raise NotFoundError("No Langfuse project is configured on this gateway.", code="project_not_found")
    return project.tracing
