"""The bucket's small JSON records: what a campaign or recommender serves, and the filters.

    campaigns/<campaign>.json          CampaignPointer: the solution version it serves (and the one before)
    recommenders/<recommender>.json    RecommenderPointer: the same for a recommender, while started
    filters/<name>.json                FilterRecord: a filter's expression and dataset group

Their keys are in layout.py; writing them is writer.py's, reading them the store's and the control
plane's. A record that does not parse is an ArtifactError, never a 500.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from personalize_core.errors import ArtifactError, InvalidInputException
from personalize_core.modelstore.layout import Manifest

#: The campaign record's key for the version it served before the current one (modelstore/pointers.py).
FALLBACK = "fallbackSolutionVersionArn"


class CampaignPointer(NamedTuple):
    campaign_arn: str
    name: str
    solution_version_arn: str
    solution: str
    version: str
    created_at: float
    updated_at: float
    #: The version served before this one (verified when it was set): what a container that cannot
    #: load the current version serves. None for a campaign that never switched.
    fallback: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "campaignArn": self.campaign_arn,
            "name": self.name,
            "solutionVersionArn": self.solution_version_arn,
            "solution": self.solution,
            "version": self.version,
            "creationDateTime": self.created_at,
            "lastUpdatedDateTime": self.updated_at,
        }
        if self.fallback is not None:
            out[FALLBACK] = self.fallback
        return out

    @classmethod
    def from_json(cls, raw: Any) -> CampaignPointer:
        try:
            fallback = raw.get(FALLBACK)
            return cls(
                campaign_arn=str(raw["campaignArn"]),
                name=str(raw["name"]),
                solution_version_arn=str(raw["solutionVersionArn"]),
                solution=str(raw["solution"]),
                version=str(raw["version"]),
                created_at=float(raw["creationDateTime"]),
                updated_at=float(raw["lastUpdatedDateTime"]),
                fallback=str(fallback) if fallback else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ArtifactError(f"campaign record is malformed: {exc!r}") from None


class RecommenderPointer(NamedTuple):
    """``recommenders/<name>.json``: the solution version a recommender serves, while it is started."""

    recommender_arn: str
    name: str
    solution_version_arn: str
    solution: str
    version: str
    active: bool
    created_at: float
    updated_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "recommenderArn": self.recommender_arn,
            "name": self.name,
            "solutionVersionArn": self.solution_version_arn,
            "solution": self.solution,
            "version": self.version,
            "active": self.active,
            "creationDateTime": self.created_at,
            "lastUpdatedDateTime": self.updated_at,
        }

    @classmethod
    def from_json(cls, raw: Any) -> RecommenderPointer:
        try:
            return cls(
                recommender_arn=str(raw["recommenderArn"]),
                name=str(raw["name"]),
                solution_version_arn=str(raw["solutionVersionArn"]),
                solution=str(raw["solution"]),
                version=str(raw["version"]),
                active=bool(raw["active"]),
                created_at=float(raw["creationDateTime"]),
                updated_at=float(raw["lastUpdatedDateTime"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"recommender record is malformed: {exc!r}") from None

    def as_campaign(self) -> CampaignPointer:
        """The same pointer in the shape the store serves campaigns with."""
        return CampaignPointer(
            self.recommender_arn,
            self.name,
            self.solution_version_arn,
            self.solution,
            self.version,
            self.created_at,
            self.updated_at,
        )


#: The status of every record this service keeps (filters, campaigns, solution versions).
ACTIVE = "ACTIVE"
#: The status of a record that cannot be used (an unreadable object, a refused update) - with a reason.
CREATE_FAILED = "CREATE FAILED"


class FilterRecord(NamedTuple):
    filter_arn: str
    name: str
    dataset_group_arn: str
    filter_expression: str
    created_at: float
    updated_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "filterArn": self.filter_arn,
            "name": self.name,
            "datasetGroupArn": self.dataset_group_arn,
            "filterExpression": self.filter_expression,
            "status": ACTIVE,
            "creationDateTime": self.created_at,
            "lastUpdatedDateTime": self.updated_at,
        }

    def check_applies_to(self, manifest: Manifest, where: str) -> None:
        """A filter applies only to the campaigns and jobs of its own dataset group, as in Personalize."""
        if self.dataset_group_arn != manifest.dataset_group:
            raise InvalidInputException(
                f"{where} belongs to dataset group {self.dataset_group_arn}, but solution version "
                f"{manifest.solution_version_arn} is in dataset group {manifest.dataset_group}: "
                "use a filter created in that dataset group"
            )

    @classmethod
    def from_json(cls, raw: Any) -> FilterRecord:
        try:
            return cls(
                filter_arn=str(raw["filterArn"]),
                name=str(raw["name"]),
                dataset_group_arn=str(raw["datasetGroupArn"]),
                filter_expression=str(raw["filterExpression"]),
                created_at=float(raw["creationDateTime"]),
                updated_at=float(raw["lastUpdatedDateTime"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ArtifactError(f"filter record is malformed: {exc!r}") from None
