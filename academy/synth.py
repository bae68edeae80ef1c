"""``academy synth``: a deterministic synthetic academy for benchmarks, demos and tests.

``synthesize(session, learners=N, seed=S, ...)`` writes what a year of the academy leaves in the
database: companies across Gyeongbuk's cities and counties, learners with Korean names working
for them, cohorts of every track over the twelve months before ``now`` (one running, one
upcoming), enrollments in every status with their event history, lab sessions, graded attempts,
the completions the passing rule gives for those scores, and a signed certificate for each.

* **Deterministic**: every learner draws from ``random.Random(f"{seed}/learner/{i}")`` and the
  companies, cohorts and synthetic courses from generators of their own, so the same seed, sizes
  and ``now`` give the same names, e-mails, dates and scores on SQLite and PostgreSQL alike.
* **Marked**: learners' e-mails are ``...@s<seed>.synth.academy.kr``; synthetic tracks and courses
  have ids starting with ``synth-``.  Running again with the same seed adds nothing when the
  learners are there ("already there") and tops up when more are asked for; another seed is
  refused (one synthetic academy per database).
* **Consistent**: at most one active enrollment per learner and track, lab sessions inside their
  cohort and never overlapping per learner, attempts after the cohort's start; completions are
  judged with the real rule (:func:`academy.completion.rules.judge` over standings decided as
  :func:`academy.grading.standing.standing_from` decides them), so ``academy completion
  recompute`` at the same ``now`` changes nothing.
* **Fast**: rows are written with Core bulk inserts in batches, a chunk of learners per
  transaction; no ORM object per row.  Certificates are signed (about 1 ms each) by a process
  pool when a chunk has many.

Left out, to keep the row count what the benchmark needs: cell scores (the standing of an
attempt without cells is its total, which is what every statistic reads), grading jobs,
submitted files, audit entries and mails.  Synthetic assignments get a placeholder release
(no notebooks on disk): they are for figures, not for opening in a lab.  ``academy init``
deactivates synthetic tracks (they are not in ``courses/``); ``academy synth`` activates them
again.  Passwords are unusable (no synthetic account can sign in).
"""

from __future__ import annotations

import datetime as dt
import math
import random
import sys
import time
import uuid
from bisect import bisect
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
from flask.cli import with_appcontext

if TYPE_CHECKING:
    from sqlalchemy import Table
    from sqlalchemy.orm import Session

    from academy.certificates.credential import Statement
    from academy.certificates.services import Issuer

DOMAIN = "synth.academy.kr"
SLUG_PREFIX = "synth-"
CHUNK = 2000  # learners per transaction
BATCH = 5000  # rows per INSERT
COURSES_PER_TRACK = 4  # synthetic tracks
ASSIGNMENTS_PER_COURSE = 10  # synthetic courses
COHORT_DAYS = 70
PERIOD_DAYS = 60
PERIODS = 7  # cohorts of a track: five over, one running, one upcoming
SEATS_PER_SECTION = 45  # a period's cohort splits into sections ("1반", "2반") of about this size

# --- reference data ----------------------------------------------------------------------------

FAMILY = (("김", "kim", 21.6), ("이", "lee", 14.8), ("박", "park", 8.5), ("최", "choi", 4.7), ("정", "jung", 4.4),
          ("강", "kang", 2.4), ("조", "cho", 2.1), ("윤", "yoon", 2.1), ("장", "jang", 2.0), ("임", "lim", 1.7),
          ("한", "han", 1.5), ("오", "oh", 1.5), ("서", "seo", 1.5), ("신", "shin", 1.4), ("권", "kwon", 1.4),
          ("황", "hwang", 1.4), ("안", "ahn", 1.4), ("송", "song", 1.3), ("류", "ryu", 1.2), ("전", "jeon", 1.1),
          ("홍", "hong", 1.1), ("고", "ko", 0.9), ("문", "moon", 0.9), ("양", "yang", 0.9), ("손", "son", 0.9),
          ("배", "bae", 0.8), ("백", "baek", 0.8), ("허", "heo", 0.7), ("유", "yoo", 0.7), ("남", "nam", 0.6),
          ("심", "shim", 0.5), ("노", "noh", 0.5), ("하", "ha", 0.5), ("곽", "kwak", 0.4), ("성", "sung", 0.4),
          ("차", "cha", 0.4), ("주", "joo", 0.4), ("우", "woo", 0.4), ("구", "koo", 0.4), ("민", "min", 0.3))
GIVEN_FIRST = (("민", "min"), ("서", "seo"), ("지", "ji"), ("현", "hyeon"), ("준", "jun"), ("도", "do"), ("예", "ye"),
               ("수", "su"), ("하", "ha"), ("은", "eun"), ("성", "seong"), ("영", "yeong"), ("정", "jeong"),
               ("동", "dong"), ("재", "jae"), ("승", "seung"), ("상", "sang"), ("혜", "hye"), ("미", "mi"),
               ("경", "gyeong"), ("태", "tae"), ("유", "yu"), ("주", "ju"), ("진", "jin"), ("윤", "yun"),
               ("건", "geon"), ("소", "so"), ("다", "da"), ("채", "chae"), ("종", "jong"))
GIVEN_SECOND = (("준", "jun"), ("우", "u"), ("호", "ho"), ("민", "min"), ("현", "hyeon"), ("진", "jin"), ("훈", "hun"),
                ("수", "su"), ("연", "yeon"), ("영", "yeong"), ("희", "hui"), ("아", "a"), ("윤", "yun"), ("은", "eun"),
                ("서", "seo"), ("빈", "bin"), ("원", "won"), ("석", "seok"), ("철", "cheol"), ("혁", "hyeok"),
                ("경", "gyeong"), ("정", "jeong"), ("주", "ju"), ("율", "yul"), ("린", "rin"), ("환", "hwan"),
                ("기", "gi"), ("성", "seong"), ("미", "mi"), ("하", "ha"))
# Colleagues from abroad (many of them read the portal in English).
FOREIGN = (("Nguyen Van Nam", "nam.nguyen"), ("Tran Thi Lan", "lan.tran"), ("Le Minh Tuan", "tuan.le"),
           ("Pham Thi Hoa", "hoa.pham"), ("Rustam Karimov", "rustam.karimov"), ("Dilnoza Yusupova", "dilnoza.yusupova"),
           ("Budi Santoso", "budi.santoso"), ("Siti Rahmawati", "siti.rahmawati"), ("Maria Santos", "maria.santos"),
           ("Ahmed Hassan", "ahmed.hassan"), ("Daniel Miller", "daniel.miller"), ("Aizhan Bekova", "aizhan.bekova"))

# Where companies are: the industrial cities big, Ulleung tiny.  Weight, tax office code.
REGION_WEIGHTS = {
    "pohang": (17, "506"), "gumi": (17, "513"), "gyeongsan": (11, "515"), "gyeongju": (10, "505"),
    "chilgok": (8, "513"), "yeongcheon": (7, "505"), "gimcheon": (5, "510"), "andong": (4, "508"),
    "goryeong": (2.5, "514"), "sangju": (2, "511"), "yeongju": (2, "512"), "seongju": (1.8, "514"),
    "mungyeong": (1.3, "511"), "cheongdo": (1, "515"), "uljin": (1, "507"), "uiseong": (0.8, "508"),
    "yecheon": (0.8, "508"), "yeongdeok": (0.6, "507"), "bonghwa": (0.4, "512"), "cheongsong": (0.4, "508"),
    "yeongyang": (0.3, "508"), "ulleung": (0.08, "506"), "outside": (4, "220"),
}
INDUSTRY_WEIGHTS = {"auto_parts": 22, "battery": 14, "steel": 14, "electronics": 16, "energy": 8, "chemicals": 7,
                    "machinery": 9, "textiles": 4, "food": 4, "other": 2}
# What each place is known for: multipliers of the industry weights.
REGION_INDUSTRY = {
    "pohang": {"steel": 4, "battery": 2.5, "energy": 1.5, "chemicals": 1.5},
    "gumi": {"electronics": 3.5, "battery": 1.5, "machinery": 1.3},
    "gyeongsan": {"auto_parts": 2.5, "machinery": 1.5}, "gyeongju": {"auto_parts": 2.5, "energy": 2},
    "chilgok": {"auto_parts": 1.5, "electronics": 1.5, "machinery": 1.5}, "yeongcheon": {"auto_parts": 3, "steel": 1.3},
    "gimcheon": {"chemicals": 1.5, "machinery": 1.5}, "andong": {"food": 2, "chemicals": 1.5},
    "sangju": {"food": 2.5, "battery": 1.5}, "goryeong": {"steel": 2, "machinery": 1.5}, "uljin": {"energy": 6},
    "yeongdeok": {"food": 3, "energy": 1.5}, "ulleung": {"food": 4}, "uiseong": {"food": 3}, "cheongsong": {"food": 3},
    "yeongyang": {"food": 3}, "bonghwa": {"food": 2.5}, "yecheon": {"food": 2}, "cheongdo": {"food": 2},
    "mungyeong": {"textiles": 1.5, "food": 1.5}, "seongju": {"electronics": 1.5},
}
COMPANY_PREFIXES = (
    "대성", "한빛", "동양", "세진", "삼원", "신영", "우진", "태광", "대한", "제일",
    "유니", "하나", "미래", "성원", "대영", "동아", "일진", "금강", "새한", "청솔",
    "영신", "대림", "화신", "경북", "삼보", "진영", "한결", "서한", "에이스", "광명",
)
COMPANY_WORDS = {
    "auto_parts": ("오토텍", "모터스", "정밀", "오토파츠", "기공", "샤시", "모빌리티"),
    "battery": ("에너지솔루션", "배터리", "이차전지", "머티리얼즈", "셀텍"),
    "steel": ("철강", "스틸", "금속", "특수강", "메탈", "강관"),
    "electronics": ("전자", "일렉트로닉스", "반도체", "디스플레이", "이노텍", "세미콘"),
    "energy": ("에너지", "파워", "전력", "솔라", "그린에너지"),
    "chemicals": ("화학", "케미칼", "소재", "첨단소재", "폴리머"),
    "machinery": ("기계", "엔지니어링", "중공업", "로보틱스", "오토메이션"),
    "textiles": ("섬유", "방직", "텍스타일"),
    "food": ("식품", "푸드", "농산", "제과"),
    "other": ("산업", "인더스트리", "제작소", "테크"),
}
JOB_ROLE_WEIGHTS = {"production": 24, "quality": 16, "maintenance": 12, "rnd": 15, "it": 9, "management": 8,
                    "office": 8, "sales": 5, "other": 3}

SYNTH_TRACKS = (
    ("스마트공장 데이터 분석", "Smart Factory Data Analytics"),
    ("설비 예지보전 AI", "Predictive Maintenance AI"),
    ("품질 검사 비전 AI", "Vision AI for Quality Inspection"),
    ("공정 최적화", "Process Optimisation"),
    ("생산 계획과 수요 예측", "Production Planning and Forecasting"),
    ("현장의 생성형 AI", "Generative AI on the Shop Floor"),
    ("배터리 제조 AI", "AI for Battery Manufacturing"),
    ("철강 공정 AI", "AI for Steelmaking"),
    ("에너지 관리 AI", "Energy Management AI"),
    ("로봇과 자동화", "Robotics and Automation"),
    ("제조 MLOps", "MLOps for Manufacturing"),
    ("AI 도입 전략", "AI Adoption for Managers"),
)
# (Korean title, English title, lab profile)
SYNTH_COURSES = (
    ("엑셀에서 파이썬으로", "From Excel to Python", "cpu"),
    ("SQL로 생산 데이터 조회하기", "Production Data with SQL", "cpu"),
    ("데이터 시각화와 대시보드", "Visualisation and Dashboards", "cpu"),
    ("통계적 공정 관리", "Statistical Process Control", "cpu"),
    ("센서 시계열 분석", "Sensor Time Series", "cpu"),
    ("이상 탐지 기초", "Anomaly Detection Basics", "cpu"),
    ("잔여 수명 예측", "Remaining Useful Life Prediction", "gpu"),
    ("진동 신호 처리", "Vibration Signal Processing", "cpu"),
    ("이미지 분류로 외관 검사", "Visual Inspection by Image Classification", "gpu"),
    ("객체 탐지로 결함 찾기", "Finding Defects with Object Detection", "gpu"),
    ("세그멘테이션으로 불량 면적 재기", "Measuring Defects with Segmentation", "gpu"),
    ("검사 모델 현장 적용", "Inspection Models on the Line", "gpu-shared"),
    ("회귀로 공정 조건 찾기", "Process Settings by Regression", "cpu"),
    ("베이지안 최적화", "Bayesian Optimisation", "cpu"),
    ("강화학습 공정 제어", "Process Control by Reinforcement Learning", "gpu"),
    ("실험 계획법", "Design of Experiments", "cpu"),
    ("수요 예측 모델", "Demand Forecasting", "cpu"),
    ("생산 일정 최적화", "Production Scheduling", "cpu"),
    ("재고와 공급망 분석", "Inventory and Supply Chains", "cpu"),
    ("계획 자동화 실습", "Automating the Plan", "cpu"),
    ("대규모 언어 모델 활용", "Working with Large Language Models", "gpu-shared"),
    ("사내 문서 검색", "Retrieval over Company Documents", "gpu-shared"),
    ("작업 표준서 자동 작성", "Drafting Work Instructions with AI", "gpu-shared"),
    ("현장 챗봇 만들기", "A Chatbot for the Shop Floor", "gpu-shared"),
    ("배터리 셀 공정 데이터", "Battery Cell Process Data", "cpu"),
    ("전극 코팅 불량 예측", "Electrode Coating Defects", "cpu"),
    ("배터리 수명 예측", "Battery Life Prediction", "gpu"),
    ("배터리 검사 영상 분석", "Battery Inspection Images", "gpu"),
    ("고로 조업 데이터 분석", "Blast Furnace Data", "cpu"),
    ("압연 품질 예측", "Rolling Quality Prediction", "cpu"),
    ("강판 표면 결함 검출", "Steel Surface Defects", "gpu"),
    ("제강 공정 최적화", "Steelmaking Optimisation", "cpu"),
    ("전력 수요 예측", "Electricity Demand Forecasting", "cpu"),
    ("공장 에너지 절감", "Saving Energy in the Factory", "cpu"),
    ("태양광 발전량 예측", "Solar Output Forecasting", "cpu"),
    ("에너지 데이터 플랫폼", "Energy Data Platforms", "cpu"),
    ("협동로봇 프로그래밍", "Programming Collaborative Robots", "cpu"),
    ("로봇 비전 기초", "Robot Vision Basics", "gpu"),
    ("PLC 데이터 수집", "Collecting PLC Data", "cpu"),
    ("모바일 로봇 경로 계획", "Path Planning for Mobile Robots", "cpu"),
    ("모델 배포와 서빙", "Deploying and Serving Models", "cpu"),
    ("모델 모니터링", "Monitoring Models", "cpu"),
    ("엣지 AI 장치", "Edge AI Devices", "gpu-shared"),
    ("데이터 파이프라인", "Data Pipelines", "cpu"),
    ("AI 프로젝트 기획", "Planning an AI Project", "cpu"),
    ("AI 도입 성과 측정", "Measuring the Value of AI", "cpu"),
    ("데이터 윤리와 보안", "Data Ethics and Security", "cpu"),
    ("현장 문제 해결 캡스톤", "Shop-Floor Capstone", "cpu"),
)


# --- results -----------------------------------------------------------------------------------

COUNTED = ("learners", "companies", "tracks", "courses", "assignments", "releases", "cohorts", "enrollments",
           "enrollment_events", "lab_sessions", "submissions", "completions", "track_completions", "certificates")


@dataclass
class SynthReport:
    """What ``synthesize`` wrote (``status`` ``created`` or ``topped_up``), or found (``already_there``)."""

    seed: int
    status: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTED, 0))
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        """The figures, for ``--json``."""
        return {"seed": self.seed, "status": self.status, **self.counts, "seconds": round(self.seconds, 2)}

    def summary(self) -> str:
        """One line for people."""
        c = self.counts
        what = {"created": "created", "topped_up": "topped up", "already_there": "already there"}[self.status]
        return (f"synthetic academy (seed {self.seed}) {what}: {c['learners']} learners, {c['companies']} companies, "
                f"{c['cohorts']} cohorts, {c['enrollments']} enrollments, {c['lab_sessions']} lab sessions, "
                f"{c['submissions']} graded submissions, {c['completions']} completions "
                f"({c['track_completions']} of tracks), {c['certificates']} certificates; {self.seconds:.1f} s")


# --- the world learners live in ----------------------------------------------------------------


class _Pick:
    """A weighted choice, drawn with one ``rng.random()``."""

    def __init__(self, items: Sequence[Any], weights: Sequence[float]) -> None:
        self.items = list(items)
        self.cum = list(accumulate(weights))

    def __call__(self, rng: random.Random) -> Any:
        return self.items[min(bisect(self.cum, rng.random() * self.cum[-1]), len(self.items) - 1)]


@dataclass(frozen=True)
class _CellSpec:
    """A graded cell of an assignment's release, with how hard it is and how it tends to fail."""

    notebook: str  # the notebook's stem, as the grader names it
    grade_id: str
    points: float
    manual: bool
    hidden: bool
    difficulty: float  # added to the learner's miss chance
    errors: tuple[str, ...]  # its failure messages, the most common first


@dataclass(frozen=True)
class _Assignment:
    id: int
    slug: str
    max_score: float
    policy: dict[str, Any]
    release_id: int
    notebook: str
    difficulty: float
    cells: tuple[_CellSpec, ...] = ()


@dataclass(frozen=True)
class _Course:
    id: int
    slug: str
    track_id: int
    profile: str
    gpus: int
    gpu_quota: float
    mark: float
    rule: Any  # PassingRule
    assignments: tuple[_Assignment, ...]
    subject: tuple[Any, ...]  # certificates.services._subject


@dataclass(frozen=True)
class _Cohort:
    id: int
    starts_at: dt.datetime
    ends_at: dt.datetime
    approval: bool
    popular: bool  # fills up: latecomers wait
    deadlines: dict[int, dt.datetime]


@dataclass
class _Track:
    id: int
    slug: str
    title_ko: str
    title_en: str
    courses: tuple[_Course, ...]
    subject: tuple[Any, ...]
    periods: list[list[_Cohort]] = field(default_factory=list)  # by start; sections of one period together


@dataclass
class _World:
    seed: int
    now: dt.datetime
    tracks: list[_Track]
    track_pick: _Pick
    companies: list[tuple[int, str, str]]  # (id, region, industry)
    company_pick: _Pick | None
    assignments: dict[int, Any]  # assignment id -> its row (for the gradebook's kept cells)


# --- entry point -------------------------------------------------------------------------------


def synthesize(session: Session, *, learners: int, seed: int = 1, companies: int | None = None, courses: int = 0,
               now: dt.datetime | None = None, issuer: Issuer,
               progress: Callable[[str], None] | None = None) -> SynthReport:
    """Fill the database with a synthetic academy of ``learners`` learners; commits as it goes.

    ``companies``: how many employers (default ``max(3, learners // 50)``); ``courses``: make
    synthetic tracks and courses until ``courses`` are active (0: the loaded catalogue only);
    ``now``: the moment the academy's year ends (default: the current time).  Raises
    ValidationFailed for bad sizes or an empty catalogue, Conflict when another seed's academy is
    there.  Idempotent: learners already there are neither repeated nor changed, and a run
    stopped half-way is finished by running it again.  ``progress`` is told after each chunk.
    """
    from sqlalchemy import func, select, text
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from academy.catalog.models import Course
    from academy.errors import Conflict, ValidationFailed
    from academy.users.models import User

    started = time.perf_counter()
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    if learners < 1:
        raise ValidationFailed("--learners must be at least 1")
    if companies is not None and companies < 1:
        raise ValidationFailed("--companies must be at least 1")
    if courses < 0:
        raise ValidationFailed("--courses must be 0 or more")
    if seed < 0:
        raise ValidationFailed("--seed must be 0 or more")
    domain = f"@s{seed}.{DOMAIN}"
    try:
        present = session.scalar(select(func.count()).select_from(User).where(User.email.like(f"%{domain}"))) or 0
        active = session.scalar(select(func.count()).select_from(Course).where(Course.active.is_(True))) or 0
    except (OperationalError, ProgrammingError):
        session.rollback()
        raise ValidationFailed("the database has no tables yet: run `academy init` first") from None
    other = session.scalar(select(User.email).where(User.email.like(f"%.{DOMAIN}"), User.email.not_like(f"%{domain}"))
                           .limit(1))
    if other is not None:
        theirs = other.rsplit("@", 1)[1].split(".", 1)[0].removeprefix("s")
        raise Conflict(f"the database already holds a synthetic academy made with seed {theirs}; "
                       "use an empty database for another seed")
    if present >= learners:
        report = SynthReport(seed, "already_there", counts=_existing_counts(session, domain))
        report.seconds = time.perf_counter() - started
        return report
    if active == 0 and courses == 0:
        raise ValidationFailed("no courses are loaded: run `academy init` first, or ask for synthetic ones "
                               "with --courses K")

    report = SynthReport(seed, "topped_up" if present else "created")
    counts = report.counts
    _ensure_catalogue(session, courses, counts)
    wanted = companies if companies is not None else max(3, learners // 50)
    world = _build_world(session, seed=seed, now=now, companies=wanted, learners=learners, domain=domain,
                         counts=counts)
    session.commit()

    signer = _Signer(issuer)
    for first in range(present, learners, CHUNK):
        last = min(first + CHUNK, learners)
        stories = [_learner(world, i) for i in range(first, last)]
        _write(session, stories, world, signer, counts)
        session.commit()
        if progress is not None:
            progress(f"{last}/{learners} learners, {counts['submissions']} submissions "
                     f"({time.perf_counter() - started:.0f} s)")
    _settle_cohorts(session, world)
    session.commit()
    # Millions of rows just loaded: refresh the planner's statistics, as after any bulk load (pg_restore's advice),
    # rather than leave the portal's and the statistics' queries planned for empty tables until autovacuum runs.
    session.execute(text("ANALYZE"))
    session.commit()
    report.seconds = time.perf_counter() - started
    return report


def _existing_counts(session: Session, domain: str) -> dict[str, int]:
    """The figures of the synthetic academy already in the database."""
    from sqlalchemy import func, select

    from academy.catalog.models import Assignment, Course, Track
    from academy.certificates.models import Certificate
    from academy.completion.models import Completion
    from academy.enrollment.models import Enrollment, EnrollmentEvent
    from academy.grading.models import Submission
    from academy.labs.models import LabSession
    from academy.users.models import User

    ours = select(User.id).where(User.email.like(f"%{domain}")).scalar_subquery()

    def count(query: Any) -> int:
        return session.scalar(select(func.count()).select_from(query.subquery())) or 0

    return {
        "learners": count(select(User.id).where(User.email.like(f"%{domain}"))),
        "companies": count(select(User.company_id).where(User.email.like(f"%{domain}"),
                                                         User.company_id.is_not(None)).distinct()),
        "tracks": count(select(Track.id).where(Track.slug.like(f"{SLUG_PREFIX}%"))),
        "courses": count(select(Course.id).where(Course.slug.like(f"{SLUG_PREFIX}%"))),
        "assignments": count(select(Assignment.id).join(Course).where(Course.slug.like(f"{SLUG_PREFIX}%"))),
        "releases": 0,
        "cohorts": count(select(Enrollment.cohort_id).where(Enrollment.user_id.in_(ours)).distinct()),
        "enrollments": count(select(Enrollment.id).where(Enrollment.user_id.in_(ours))),
        "enrollment_events": count(select(EnrollmentEvent.id).join(Enrollment)
                                   .where(Enrollment.user_id.in_(ours))),
        "lab_sessions": count(select(LabSession.id).where(LabSession.user_id.in_(ours))),
        "submissions": count(select(Submission.id).where(Submission.user_id.in_(ours))),
        "completions": count(select(Completion.id).where(Completion.user_id.in_(ours))),
        "track_completions": count(select(Completion.id).where(Completion.user_id.in_(ours),
                                                               Completion.course_id.is_(None))),
        "certificates": count(select(Certificate.id).where(Certificate.user_id.in_(ours))),
    }


# --- catalogue, companies, cohorts -------------------------------------------------------------


def _ensure_catalogue(session: Session, wanted: int, counts: dict[str, int]) -> None:
    """Add (or reactivate) synthetic tracks and courses until ``wanted`` courses are active.

    Synthetic course ``n`` is the same whatever the seed: benchmarks compare like with like.
    """
    from sqlalchemy import select

    from academy.catalog.manifest import GRADING_DEFAULTS
    from academy.catalog.models import Assignment, Course, Track

    real = session.scalars(select(Course.id).where(Course.active.is_(True),
                                                   Course.slug.not_like(f"{SLUG_PREFIX}%"))).all()
    needed = wanted - len(real)
    tracks = {t.slug: t for t in session.scalars(select(Track).where(Track.slug.like(f"{SLUG_PREFIX}%")))}
    existing = {c.slug: c for c in session.scalars(select(Course).where(Course.slug.like(f"{SLUG_PREFIX}%")))}
    for number in range(1, needed + 1):
        course_rng = random.Random(f"catalogue/course/{number}")
        track_number = (number - 1) // COURSES_PER_TRACK + 1
        track_slug = f"{SLUG_PREFIX}t{track_number:02d}"
        track = tracks.get(track_slug)
        if track is None:
            ko, en = _numbered(SYNTH_TRACKS, track_number - 1)
            track = Track(slug=track_slug, title_ko=ko, title_en=en, position=100 + track_number,
                          description_ko=f"합성 데이터로 만든 트랙입니다: {ko}.",
                          description_en=f"A synthetic track: {en}.")
            session.add(track)
            tracks[track_slug] = track
            counts["tracks"] += 1
        track.active = True
        slug = f"{SLUG_PREFIX}c{number:02d}"
        course = existing.get(slug)
        if course is not None:
            course.active = True
            for assignment in course.assignments:
                assignment.active = True
            continue
        ko, en, profile = SYNTH_COURSES[(number - 1) % len(SYNTH_COURSES)]
        if number > len(SYNTH_COURSES):
            ko, en = f"{ko} {number // len(SYNTH_COURSES) + 1}", f"{en} {number // len(SYNTH_COURSES) + 1}"
        position = (number - 1) % COURSES_PER_TRACK + 1
        rule: dict[str, Any] = {"min_score_percent": course_rng.choice((60, 60, 60, 70))}
        slugs = [f"{n:02d}-lab" for n in range(1, ASSIGNMENTS_PER_COURSE + 1)]
        if course_rng.random() < 0.4:
            rule["required_assignments"] = sorted(course_rng.sample(slugs, course_rng.randint(4, 8)))
        if course_rng.random() < 0.3:
            rule["min_total_percent"] = 50
        if profile != "cpu" and course_rng.random() < 0.5:
            rule["min_lab_hours"] = 2
        course = Course(slug=slug, track=track, title_ko=ko, title_en=en, position=position,
                        description_ko=f"합성 데이터로 만든 과정입니다: {ko}.",
                        description_en=f"A synthetic course: {en}.",
                        hours=float(course_rng.choice((8, 12, 12, 16, 20, 24))), lab_profile=profile,
                        gpu_hour_quota=10.0 if profile != "cpu" else 0.0, passing_rule=rule,
                        competencies=[{"ko": f"{ko} 실무 적용", "en": f"Apply {en.lower()} at work"}],
                        source_path=f"synthetic/{slug}", manifest_hash="")
        session.add(course)
        counts["courses"] += 1
        window = (COHORT_DAYS - 7) // COURSES_PER_TRACK
        for n, assignment_slug in enumerate(slugs, start=1):
            policy = dict(GRADING_DEFAULTS)
            if course_rng.random() < 0.2:
                policy["score_policy"] = "last"
            if course_rng.random() < 0.3:
                policy["hidden_tests"] = "immediately"
            if course_rng.random() < 0.1:
                policy["late_policy"] = "refuse"
            session.add(Assignment(course=course, slug=assignment_slug, title_ko=f"{ko} 실습 {n}",
                                   title_en=f"{en}: lab {n}", position=n,
                                   due_days=(position - 1) * window + math.ceil(n * window / ASSIGNMENTS_PER_COURSE),
                                   max_score=float(course_rng.choice((10, 10, 20, 25, 30))),
                                   notebooks=[f"{assignment_slug}.ipynb"], grading=policy))
            counts["assignments"] += 1
    session.flush()


def _numbered(titles: Sequence[tuple[str, str]], index: int) -> tuple[str, str]:
    ko, en = titles[index % len(titles)]
    if index >= len(titles):
        return f"{ko} {index // len(titles) + 1}", f"{en} {index // len(titles) + 1}"
    return ko, en


def _build_world(session: Session, *, seed: int, now: dt.datetime, companies: int, learners: int, domain: str,
                 counts: dict[str, int]) -> _World:
    """The catalogue as plain values, the companies and the cohorts (made or found)."""
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    from academy.catalog.manifest import GRADING_DEFAULTS
    from academy.catalog.models import Course, Track
    from academy.certificates.services import _subject
    from academy.completion.models import Completion
    from academy.completion.rules import PassingRule
    from academy.grading.models import AssignmentRelease

    releases: dict[int, tuple[int, int]] = {}
    paths: dict[int, str] = {}
    for release in session.execute(select(AssignmentRelease.assignment_id, AssignmentRelease.version,
                                          AssignmentRelease.id, AssignmentRelease.path)):
        paths[release.id] = release.path
        if release.assignment_id not in releases or releases[release.assignment_id][0] < release.version:
            releases[release.assignment_id] = (release.version, release.id)
    track_rows = session.scalars(select(Track).where(Track.active.is_(True)).order_by(Track.position, Track.slug)
                                 .options(selectinload(Track.courses).selectinload(Course.assignments))).all()
    tracks: list[_Track] = []
    loaded: dict[int, Any] = {}  # assignment id -> row, for the deadlines
    for track in track_rows:
        courses = []
        for course in (c for c in track.courses if c.active):
            active = [a for a in course.assignments if a.active]
            if not active:
                continue
            infos = []
            for assignment in active:
                loaded[assignment.id] = assignment
                if assignment.id not in releases:  # never released (a catalogue loaded without `academy init`)
                    release = AssignmentRelease(assignment_id=assignment.id, version=1, source_hash="synthetic",
                                                path="synthetic")
                    session.add(release)
                    session.flush()
                    releases[assignment.id] = (1, release.id)
                    counts["releases"] += 1
                policy = {**GRADING_DEFAULTS, **(assignment.grading or {})}
                own = random.Random(f"{seed}/{course.slug}/{assignment.slug}")
                notebook = (assignment.notebooks or ["lab.ipynb"])[0]
                infos.append(_Assignment(assignment.id, assignment.slug, float(assignment.max_score or 0.0), policy,
                                         releases[assignment.id][1], notebook, own.uniform(-0.1, 0.12),
                                         _graded_cells(paths.get(releases[assignment.id][1], ""), assignment.slug,
                                                       notebook, float(assignment.max_score or 0.0), own)))
            rule = PassingRule.from_manifest(course.passing_rule, [a.slug for a in active])
            mark = rule.min_score_percent
            courses.append(_Course(course.id, course.slug, track.id, course.lab_profile,
                                   0 if course.lab_profile == "cpu" else 1, float(course.gpu_hour_quota or 0.0), mark,
                                   rule, tuple(infos), _subject(Completion(course=course, track=track))))
        if len(courses) == len([c for c in track.courses if c.active]) and courses:
            tracks.append(_Track(track.id, track.slug, track.title_ko, track.title_en, tuple(courses),
                                 _subject(Completion(course=None, track=track))))
    if not tracks:
        from academy.errors import ValidationFailed

        raise ValidationFailed("no active track has a course with assignments: run `academy init` first")
    weights = [1.0 / (1 + 0.25 * rank) for rank in range(len(tracks))]
    _make_cohorts(session, tracks, weights, loaded, seed=seed, now=now, learners=learners, domain=domain,
                  counts=counts)
    company_rows = _make_companies(session, seed=seed, wanted=companies, now=now, counts=counts)
    pick = _Pick(range(len(company_rows)), [1.0 / (j + 1) ** 0.7 for j in range(len(company_rows))]) \
        if company_rows else None
    return _World(seed, now, tracks, _Pick(tracks, weights), company_rows, pick, loaded)


def _make_companies(session: Session, *, seed: int, wanted: int, now: dt.datetime,
                    counts: dict[str, int]) -> list[tuple[int, str, str]]:
    """(id, region, industry) of company ``j`` of the seed, j < ``wanted``: found by number and name, or made."""
    from sqlalchemy import select

    from academy.users.models import Company

    by_number = {number: (cid, name) for cid, number, name in
                 session.execute(select(Company.id, Company.business_number, Company.name))}
    regions = _Pick(list(REGION_WEIGHTS), [w for w, _code in REGION_WEIGHTS.values()])
    result: list[tuple[int, str, str]] = []
    new: list[tuple[int, dict[str, Any]]] = []
    for j in range(wanted):
        rng = random.Random(f"{seed}/company/{j}")
        region = regions(rng)
        boost = REGION_INDUSTRY.get(region, {})
        industry = _Pick(list(INDUSTRY_WEIGHTS), [w * boost.get(k, 1) for k, w in INDUSTRY_WEIGHTS.items()])(rng)
        name, corporate = _company_name(rng, region, industry)
        while True:  # a number another company has is skipped; the one this company had is found again
            number = _business_number(rng, REGION_WEIGHTS[region][1], corporate)
            found = by_number.get(number)
            if found is None or (found[1] == name and found[0] >= 0):
                break
        if found is not None:
            result.append((found[0], region, industry))
            continue
        by_number[number] = (-1, name)
        new.append((len(result), {"name": name, "business_number": number,
                                  "created_at": now - dt.timedelta(days=rng.uniform(400, 900))}))
        result.append((-1, region, industry))
    if new:
        ids = _insert(session, Company.__table__, [row for _j, row in new], returning=True)
        for (j, _row), cid in zip(new, ids, strict=True):
            result[j] = (cid, result[j][1], result[j][2])
        counts["companies"] += len(new)
    return result


def _company_name(rng: random.Random, region: str, industry: str) -> tuple[str, bool]:
    """A company name as Korean firms write it, and whether it is a corporation."""
    from academy.users.reference import REGION_NAMES_KO

    if region != "outside" and rng.random() < 0.45:
        prefix = REGION_NAMES_KO[region][:-1]
    else:
        prefix = rng.choice(COMPANY_PREFIXES)
    base = prefix + rng.choice(COMPANY_WORDS[industry])
    form = rng.random()
    if form < 0.5:
        return f"(주){base}", True
    if form < 0.75:
        return f"{base}(주)", True
    return base, False


def _business_number(rng: random.Random, office: str, corporate: bool) -> str:
    """A business registration number with a valid check digit (``XXX-XX-XXXXX``)."""
    from academy.users.reference import normalize_business_number

    kind = rng.choice(("81", "81", "81", "86", "87")) if corporate else f"{rng.randint(1, 79):02d}"
    digits = [int(c) for c in office + kind + f"{rng.randint(0, 9999):04d}"]
    total = sum(n * w for n, w in zip(digits, (1, 3, 7, 1, 3, 7, 1, 3, 5), strict=True)) + digits[8] * 5 // 10
    return normalize_business_number("".join(map(str, digits)) + str((10 - total % 10) % 10))


def _make_cohorts(session: Session, tracks: list[_Track], weights: list[float], assignments: dict[int, Any], *,
                  seed: int, now: dt.datetime, learners: int, domain: str, counts: dict[str, int]) -> None:
    """Each track's cohorts: those the seed's learners are in already, else new ones over the past year.

    Fills every assignment's deadline in every cohort (``grading.services.cohort_deadline``).
    """
    from zoneinfo import ZoneInfo

    from sqlalchemy import select

    from academy.enrollment.models import Cohort, Enrollment
    from academy.grading.services import cohort_deadline
    from academy.i18n import DISPLAY_TIMEZONE
    from academy.users.models import User

    seoul = ZoneInfo(DISPLAY_TIMEZONE)
    ours = select(User.id).where(User.email.like(f"%{domain}")).scalar_subquery()
    used: dict[int, list[Cohort]] = {}
    for cohort in session.scalars(select(Cohort).where(Cohort.id.in_(
            select(Enrollment.cohort_id).where(Enrollment.user_id.in_(ours)))).order_by(Cohort.starts_at, Cohort.id)):
        used.setdefault(cohort.track_id, []).append(cohort)
    names = {(t, n) for t, n in session.execute(select(Cohort.track_id, Cohort.name))}
    today = now.astimezone(seoul).replace(hour=9, minute=0, second=0, microsecond=0)
    total = sum(weights)
    for index, (track, weight) in enumerate(zip(tracks, weights, strict=True)):
        rows = used.get(track.id)
        if not rows:
            rng = random.Random(f"{seed}/cohorts/{track.slug}")
            expected = learners * 1.6 * weight / total / PERIODS
            sections = max(1, math.ceil(expected / SEATS_PER_SECTION))
            rows = []
            for k in range(PERIODS):
                start = today + dt.timedelta(days=(k - PERIODS + 1) * PERIOD_DAYS + 10 + (index * 9) % 30)
                for section in range(1, sections + 1):
                    name = f"{start.year}년 {start.month}월 {section}반"
                    if (track.id, name) in names:
                        name = f"{name} ({seed})"
                    cohort = Cohort(track_id=track.id, name=name, starts_at=start.astimezone(dt.UTC),
                                    ends_at=(start + dt.timedelta(days=COHORT_DAYS - 1, hours=9)).astimezone(dt.UTC),
                                    enroll_closes_at=(start + dt.timedelta(days=7)).astimezone(dt.UTC),
                                    capacity=1_000_000, seats_taken=0, requires_approval=rng.random() < 0.25,
                                    created_at=min(start - dt.timedelta(days=45), now).astimezone(dt.UTC))
                    session.add(cohort)
                    rows.append(cohort)
                    counts["cohorts"] += 1
            session.flush()
        periods: dict[dt.datetime, list[_Cohort]] = {}
        for cohort in rows:
            popular = random.Random(f"{seed}/popular/{track.slug}/{cohort.name}").random() < 0.3
            deadlines = {a.id: cohort_deadline(assignments[a.id], cohort) for c in track.courses for a in c.assignments}
            periods.setdefault(cohort.starts_at, []).append(
                _Cohort(cohort.id, cohort.starts_at, cohort.ends_at, cohort.requires_approval, popular, deadlines))
        track.periods = [periods[start] for start in sorted(periods)]


# --- one learner's year ------------------------------------------------------------------------


@dataclass
class _Attempt:
    row: dict[str, Any]
    graded_at: dt.datetime | None
    visible: float = 0.0  # points of the cells without hidden tests, after the late penalty


@dataclass
class _Story:
    """Everything one learner did, as rows without ids yet."""

    user: dict[str, Any]
    email: str
    enrollments: list[tuple[dict[str, Any], list[dict[str, Any]]]] = field(default_factory=list)
    labs: list[tuple[dict[str, Any], dt.datetime]] = field(default_factory=list)  # row, latest stop allowed
    submissions: list[dict[str, Any]] = field(default_factory=list)
    cells: list[list[dict[str, Any]]] = field(default_factory=list)  # each submission's cell scores
    completions: list[tuple[dict[str, Any], tuple[Any, ...]]] = field(default_factory=list)  # row, subject


def _between(rng: random.Random, start: dt.datetime, end: dt.datetime) -> dt.datetime:
    if end <= start:
        return start
    return start + dt.timedelta(seconds=rng.uniform(0, (end - start).total_seconds()))


def _learner(world: _World, i: int) -> _Story:
    """Learner ``i`` of the seed: who they are, where they enrolled, what they did there."""
    from academy.users.passwords import unusable_password_hash
    from academy.users.services import CONSENT_VERSION

    rng = random.Random(f"{world.seed}/learner/{i}")
    locale = "en" if rng.random() < 0.06 else "ko"
    if locale == "en" and rng.random() < 0.6:
        name, local = rng.choice(FOREIGN)
    else:
        family, family_roman, _weight = _FAMILY_PICK(rng)
        first, second = rng.choice(GIVEN_FIRST), rng.choice(GIVEN_SECOND)
        while second[0] == first[0]:
            second = rng.choice(GIVEN_SECOND)
        name, local = family + first[0] + second[0], f"{first[1]}{second[1]}.{family_roman}"
    email = f"{local}{i + 1}@s{world.seed}.{DOMAIN}"
    company_id, region, industry = None, None, None
    if world.company_pick is not None and rng.random() >= 0.1:
        company_id, region, industry = world.companies[world.company_pick(rng)]
    else:
        region = _REGION_PICK(rng)
        industry = _INDUSTRY_PICK(rng) if rng.random() < 0.6 else None
    story = _Story({"email": email, "name": name, "password_hash": unusable_password_hash(), "role": "learner",
                    "company_id": company_id, "region": region, "industry": industry,
                    "job_role": _JOB_PICK(rng), "locale": locale, "consent_version": CONSENT_VERSION,
                    "active": True}, email)
    skill = min(1.0, max(0.15, rng.gauss(0.72, 0.16)))
    diligence = rng.random()
    lab_spans: dict[int, list[tuple[dt.datetime, dt.datetime]]] = {}
    attempts: dict[int, list[_Attempt]] = {}  # assignment id -> attempts
    first_request = world.now
    for track, period in _choose_seats(rng, world):
        for row, events, seat in _enroll(rng, world, track, period):
            story.enrollments.append((row, events))
            first_request = min(first_request, row["requested_at"])
            if seat is not None:
                _study(rng, world, story, track, seat, skill, diligence, attempts)
    _settle_labs(story, lab_spans, world.now)
    created = first_request - dt.timedelta(days=rng.uniform(0.1, 20))
    story.user.update(created_at=created, consent_at=created,
                      last_login_at=max([created] + [r["submitted_at"] for r in story.submissions]
                                        + [r["queued_at"] for r, _bound in story.labs]))
    _complete(rng, world, story, attempts, lab_spans)
    return story


def _choose_seats(rng: random.Random, world: _World) -> list[tuple[_Track, int]]:
    """Which tracks, in which periods: later tracks in later periods, as a learner moves on."""
    how_many = min(len(world.tracks), 1 + (rng.random() < 0.65) + (rng.random() < 0.45) + (rng.random() < 0.25))
    chosen: list[_Track] = []
    while len(chosen) < how_many:
        track = world.track_pick(rng)
        if track not in chosen:
            chosen.append(track)
    chosen.sort(key=lambda t: world.tracks.index(t))
    seats = []
    period = None
    for track in chosen:
        count = len(track.periods)
        if period is None:
            weights = [0.5 if p[0].starts_at > world.now else 0.7 + 0.1 * k for k, p in enumerate(track.periods)]
            period = _Pick(range(count), weights)(rng)
        else:
            period = min(count - 1, period + (1 if rng.random() < 0.7 else 0))
        seats.append((track, min(period, count - 1)))
    return seats


def _enroll(rng: random.Random, world: _World, track: _Track, period: int
            ) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]], tuple[_Cohort, dt.datetime] | None]]:
    """The enrollment rows of one track: one, or a withdrawal or rejection and a later cohort.

    Yields (row, events, seat) where seat is (cohort, end of the learner's time there) when the
    learner held a seat in a cohort that has begun, else None.
    """
    now = world.now
    while True:
        cohort = rng.choice(track.periods[period])
        phase = "past" if cohort.ends_at <= now else ("upcoming" if cohort.starts_at > now else "current")
        status = _status(rng, cohort, phase)
        requested = cohort.starts_at - dt.timedelta(days=rng.uniform(2, 35), seconds=rng.uniform(0, 36000))
        if requested > now - dt.timedelta(hours=1):
            requested = now - dt.timedelta(days=rng.uniform(0.05, 10))
        events = []
        moment = requested
        if cohort.approval:
            events.append(("pending", moment))
            moment = min(moment + dt.timedelta(hours=rng.uniform(2, 96)), now)
        if status == "enrolled" or status == "withdrawn":
            events.append(("enrolled", moment))
        elif status in ("waitlisted", "rejected"):
            events.append((status, moment))
        seat_end = min(cohort.ends_at, now)
        if status == "withdrawn":
            if phase == "upcoming":
                left = _between(rng, moment, now)
            else:
                left = cohort.starts_at + dt.timedelta(days=rng.uniform(3, COHORT_DAYS / 2))
                if left >= now:
                    left = _between(rng, max(moment, cohort.starts_at), now)
            events.append(("withdrawn", max(left, moment)))
            seat_end = min(seat_end, left)
        previous = None
        rows = []
        for to, at in events:
            rows.append({"from_status": previous, "to_status": to, "created_at": at, "actor_id": None,
                         "note": None})
            previous = to
        row = {"cohort_id": cohort.id, "track_id": track.id, "status": status, "requested_at": requested,
               "updated_at": events[-1][1] if events else requested}
        held = status in ("enrolled", "withdrawn") and seat_end > cohort.starts_at
        yield row, rows, ((cohort, seat_end) if held else None)
        if status not in ("withdrawn", "rejected") or period + 1 >= len(track.periods) or rng.random() > 0.3:
            return
        period += 1


def _status(rng: random.Random, cohort: _Cohort, phase: str) -> str:
    """An enrollment's status, as often as each happens in such a cohort."""
    r = rng.random()
    table = {  # (pending, rejected, waitlisted, withdrawn) shares; the rest are enrolled
        "past": (0.0, 0.07, 0.0, 0.11), "current": (0.05, 0.05, 0.06, 0.08), "upcoming": (0.3, 0.04, 0.12, 0.03),
    }[phase]
    pending, rejected, waitlisted, withdrawn = table
    if not cohort.approval:
        pending = rejected = 0.0
    if not cohort.popular:
        waitlisted = 0.0
    for status, share in (("pending", pending), ("rejected", rejected), ("waitlisted", waitlisted),
                          ("withdrawn", withdrawn)):
        if r < share:
            return status
        r -= share
    return "enrolled"


def _study(rng: random.Random, world: _World, story: _Story, track: _Track, seat: tuple[_Cohort, dt.datetime],
           skill: float, diligence: float, attempts: dict[int, list[_Attempt]]) -> None:
    """Labs and attempts in one cohort, course after course, until the learner stops or the seat ends."""
    cohort, seat_end = seat
    withdrawn = seat_end < min(cohort.ends_at, world.now)
    horizon = seat_end - dt.timedelta(minutes=30)
    progressed = True
    for index, course in enumerate(track.courses):
        if not progressed:
            break  # nothing passed in the last course: the learner does not go on
        p_lab = 0.85 if index == 0 else 0.92
        if withdrawn:
            p_lab *= 0.5
        lab = rng.random() < p_lab
        submits = not withdrawn and rng.random() < (0.88 if lab else 0.1)
        if lab:
            _labs(rng, story, course, cohort, seat_end)
        progressed = False
        if not submits:
            continue
        for number, assignment in enumerate(course.assignments):
            if number and rng.random() > (0.85 + 0.15 * diligence) * 0.99 ** number:
                continue
            due = cohort.deadlines[assignment.id]
            late = assignment.policy.get("late_policy") != "refuse" and rng.random() < 0.06
            if late:
                moment = due + dt.timedelta(hours=rng.uniform(1, 96))
            else:
                earliest = max(cohort.starts_at + dt.timedelta(hours=1), due - dt.timedelta(days=12))
                moment = _between(rng, earliest, due - dt.timedelta(minutes=5))
            if moment > horizon:
                continue
            share = min(1.0, max(0.0, skill - assignment.difficulty + rng.gauss(0, 0.12)))
            done = _attempts(rng, story, course, assignment, moment, due, horizon, share, lab)
            attempts.setdefault(assignment.id, []).extend(done)
            if any(a.row["score"] is not None and assignment.max_score
                   and 100 * a.row["score"] / assignment.max_score >= course.mark for a in done):
                progressed = True


def _attempts(rng: random.Random, story: _Story, course: _Course, assignment: _Assignment, moment: dt.datetime,
              due: dt.datetime, horizon: dt.datetime, share: float, lab: bool) -> list[_Attempt]:
    """One to three graded attempts at an assignment, the later ones better."""
    from academy.grading.deadlines import apply_penalty, lateness

    done: list[_Attempt] = []
    for number in (1, 2, 3):
        late = lateness(moment, due, assignment.policy)
        status, problems = "graded", []
        worked = share
        r = rng.random()
        if r < 0.006:
            status, problems = "grader_error", ["grader error"]
        elif r < 0.035:
            status = "learner_code_failed"
            worked = share * rng.uniform(0.0, 0.6)
            problems = [f"time limit for the submission reached in {assignment.notebook}: cell {rng.randint(3, 12)}; "
                        "later cells were not run"]
        graded = moment + dt.timedelta(seconds=rng.uniform(20, 600))
        public_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        # Cells drawn from their own generator: the rest of the academy does not depend on how many there are.
        cells, raw = ([], None) if status == "grader_error" else \
            _cell_scores(random.Random(public_id), worked, assignment)
        visible = sum(c["score"] for c in cells if not c["hidden"])
        row = {"public_id": public_id, "assignment_id": assignment.id,
               "release_id": assignment.release_id, "attempt": number,
               "origin": "lab" if lab and rng.random() < 0.8 else "upload", "submitted_at": moment, "due_at": due,
               "late_days": late.late_days, "penalty_percent": late.penalty_percent, "status": status,
               "raw_score": raw, "score": None if raw is None else apply_penalty(raw, late.penalty_percent),
               "max_score": assignment.max_score, "problems": problems, "flagged": False, "flag_reasons": [],
               "feedback_sha256": None, "graded_at": graded}
        story.submissions.append(row)
        story.cells.append(cells)
        done.append(_Attempt(row, graded, apply_penalty(visible, late.penalty_percent)))
        passed = row["score"] is not None and assignment.max_score > 0 \
            and 100 * row["score"] / assignment.max_score >= course.mark
        # Autograded work invites another try: to pass, and often to do better.
        again = 0.75 if not passed else (0.3 if row["score"] is not None and row["score"] < 0.9 * assignment.max_score
                                          else 0.05)
        if rng.random() >= again:
            break
        moment = moment + dt.timedelta(hours=rng.uniform(0.2, 72))
        if moment > horizon or (moment > due and assignment.policy.get("late_policy") == "refuse"):
            break
        share = min(1.0, share + rng.uniform(0.05, 0.3))
    return done


def _points(share: float, maximum: float) -> float:
    step = 0.5 if maximum >= 10 else 0.1
    return round(round(share * maximum / step) * step, 2)


#: What failing learner code says, most common first: each cell draws its own order.
_FAILURES = (
    "AssertionError: 결과가 기대한 값과 다릅니다",
    "NameError: name 'df' is not defined",
    "KeyError: 'defect_rate'",
    "TypeError: unsupported operand type(s) for /: 'str' and 'int'",
    "NotImplementedError",
    "ValueError: could not convert string to float: ''",
)


def _graded_cells(release_path: str, slug: str, notebook: str, max_score: float,
                  rng: random.Random) -> tuple[_CellSpec, ...]:
    """The release's graded cells (from its source notebooks), or four equal made-up ones without a release."""
    import json

    found: list[tuple[str, str, float, bool, bool]] = []
    source = Path(release_path) / "source" / slug if release_path else None
    for path in sorted(source.glob("*.ipynb")) if source is not None and source.is_dir() else []:
        try:
            cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
        except (OSError, ValueError):
            continue
        for cell in cells:
            meta = (cell.get("metadata") or {}).get("nbgrader") or {}
            if not (meta.get("grade") and meta.get("grade_id")):
                continue
            text = cell.get("source", "")
            text = "".join(text) if isinstance(text, list) else text
            found.append((path.stem, meta["grade_id"], float(meta.get("points") or 0.0),
                          bool(meta.get("solution")), "BEGIN HIDDEN TESTS" in text))
    total = sum(points for _stem, _grade_id, points, _manual, _hidden in found)
    if not found or total <= 0:
        stem = notebook.removesuffix(".ipynb")
        found = [(stem, f"q{i}", 1.0, False, False) for i in range(1, 5)]
        total = 4.0
    scale = max_score / total if max_score > 0 else 1.0
    specs = []
    for stem, grade_id, points, manual, hidden in found:
        errors = list(_FAILURES)
        rng.shuffle(errors)
        specs.append(_CellSpec(stem, grade_id, round(points * scale, 4), manual, hidden,
                               rng.uniform(-0.15, 0.25), tuple(errors[:4])))
    return tuple(specs)


def _cell_scores(rng: random.Random, share: float, assignment: _Assignment) -> tuple[list[dict[str, Any]], float]:
    """Each graded cell's points for a learner doing ``share`` of the work: tests pass or fail whole,
    written answers get part marks.  Returns the cell rows (without their submission) and their sum."""
    rows: list[dict[str, Any]] = []
    for cell in assignment.cells:
        chance = min(0.98, max(0.02, share - cell.difficulty + 0.1))
        if cell.manual:
            score = _points(min(1.0, max(0.0, chance + rng.gauss(0, 0.15))), cell.points)
            error = None
        else:
            passed = rng.random() < chance
            score = cell.points if passed else 0.0
            error = None if passed else cell.errors[min(int(rng.expovariate(1.2)), len(cell.errors) - 1)]
        rows.append({"notebook": cell.notebook, "grade_id": cell.grade_id, "score": score,
                     "max_score": cell.points, "hidden": cell.hidden, "manual": cell.manual, "error": error})
    return rows, round(sum(r["score"] for r in rows), 4)


def _labs(rng: random.Random, story: _Story, course: _Course, cohort: _Cohort, seat_end: dt.datetime) -> None:
    """Lab sessions of one course inside the seat's time, GPU hours within the course's quota."""
    count = 1 + min(11, int(rng.expovariate(1.0) * (1 + 0.25 * len(course.assignments))))
    used = 0.0
    for _ in range(count):
        assignment = rng.choice(course.assignments)
        due = cohort.deadlines[assignment.id]
        queued = _between(rng, max(cohort.starts_at, due - dt.timedelta(days=12)), min(due, seat_end))
        wait = rng.uniform(10, 900) if course.gpus else rng.uniform(3, 40)
        row = {"course_id": course.id, "assignment_id": assignment.id, "cohort_id": cohort.id,
               "profile": course.profile, "gpus": course.gpus, "device": None, "state": "stopped",
               "queued_at": queued, "requested_at": queued + dt.timedelta(seconds=wait * 0.9),
               "started_at": None, "stopped_at": None, "last_seen_at": queued, "warned_at": None,
               "stop_reason": None, "error": None, "progress": 100, "progress_step": "ready",
               "progress_message": None, "start_sent_at": queued + dt.timedelta(seconds=wait * 0.9),
               "start_attempts": 1, "notebook_path": None}
        r = rng.random()
        if course.gpus and r < 0.04:
            row.update(state="cancelled", stop_reason="left_queue", stopped_at=queued + dt.timedelta(seconds=wait),
                       requested_at=None, start_sent_at=None, start_attempts=0, progress=0, progress_step="queued")
        elif r < 0.055:
            row.update(state="failed", stop_reason="timeout", error="the server did not start in time",
                       stopped_at=queued + dt.timedelta(seconds=wait + 300), progress=50, progress_step="spawning")
        else:
            minutes = min(240.0, max(8.0, rng.lognormvariate(math.log(55), 0.75)))
            reason = "user" if rng.random() < 0.55 else "hub"
            if course.gpus and course.gpu_quota and used + minutes / 60 > course.gpu_quota:
                minutes, reason = (course.gpu_quota - used) * 60, "quota"
            if minutes <= 1:
                break
            used += minutes / 60
            start = queued + dt.timedelta(seconds=wait)
            row.update(started_at=start, stopped_at=start + dt.timedelta(minutes=minutes), stop_reason=reason,
                       device=str(rng.randint(0, 3)) if course.gpus else None)
        row["last_seen_at"] = row["stopped_at"]
        story.labs.append((row, min(seat_end, cohort.ends_at)))
        if row["stop_reason"] == "quota":
            break


def _settle_labs(story: _Story, spans: dict[int, list[tuple[dt.datetime, dt.datetime]]],
                 now: dt.datetime) -> None:
    """One lab at a time: a session that would overlap the previous one waits for it, or is dropped."""
    kept = []
    free = None
    for row, bound in sorted(story.labs, key=lambda pair: pair[0]["queued_at"]):
        if free is not None and row["queued_at"] < free:
            shift = free + dt.timedelta(minutes=2) - row["queued_at"]
            for key in ("queued_at", "requested_at", "started_at", "stopped_at", "last_seen_at", "start_sent_at"):
                if row[key] is not None:
                    row[key] += shift
        if row["stopped_at"] > min(bound, now):
            if row["started_at"] is None or row["started_at"] + dt.timedelta(minutes=5) >= min(bound, now):
                continue
            row["stopped_at"] = row["last_seen_at"] = min(bound, now)
        kept.append((row, bound))
        free = row["stopped_at"]
        if row["started_at"] is not None:
            spans.setdefault(row["course_id"], []).append((row["started_at"], row["stopped_at"]))
    story.labs = kept


# --- completions, as the portal judges them ----------------------------------------------------


def _standing(assignment: _Assignment, attempts: list[_Attempt], due: dt.datetime, now: dt.datetime,
              mark: float) -> tuple[str, float | None, float, dt.datetime | None]:
    """(status, final score, max score, when final) as ``grading.standing.standing_from`` decides them.

    The same rules: the held check (while held, "best" is judged on the points of cells without
    hidden tests), the attempt that counts under ``score_policy``, grader errors, the pass mark.
    Every cell this module writes is graded, so nothing waits for an instructor.
    """
    from academy.grading.deadlines import counting_score

    if not attempts:
        return "not_started", None, assignment.max_score, None
    held = assignment.policy.get("hidden_tests") == "after_deadline" and now < due
    newest = max(attempts, key=lambda a: a.row["attempt"])
    scored = [a for a in attempts if a.row["status"] != "grader_error" and a.row["score"] is not None]
    counted = None
    if scored:
        if assignment.policy.get("score_policy") == "last":
            counted = max(scored, key=lambda a: a.row["attempt"])
        else:
            values = [a.visible if held else a.row["score"] for a in scored]
            best = counting_score(list(zip([a.row["attempt"] for a in scored], values, strict=True)), "best")
            counted = min((a for a, v in zip(scored, values, strict=True) if v == best),
                          key=lambda a: a.row["attempt"])
    if counted is None:
        status = "grader_error" if newest.row["status"] == "grader_error" else "not_passed"
        return status, None, assignment.max_score, None
    maximum = float(counted.row["max_score"] or assignment.max_score or 0.0)
    if held:
        return "held", None, maximum, None
    score = counted.row["score"]
    status = "passed" if maximum > 0 and 100.0 * float(score or 0.0) / maximum >= mark else "not_passed"
    final_at = counted.graded_at or counted.row["submitted_at"]
    if assignment.policy.get("hidden_tests") == "after_deadline":
        final_at = max(final_at, due)
    return status, score, maximum, final_at


def _complete(rng: random.Random, world: _World, story: _Story, attempts: dict[int, list[_Attempt]],
              spans: dict[int, list[tuple[dt.datetime, dt.datetime]]]) -> None:
    """Course completions from the scores and lab hours (the real rule), then track completions."""
    from academy.completion.rules import AssignmentResult, hours_reached, judge

    now = world.now
    cohorts = {row["track_id"]: row["cohort_id"] for row, _events in story.enrollments if row["status"] == "enrolled"}
    for track in world.tracks:
        cohort_id = cohorts.get(track.id)
        if cohort_id is None:
            continue
        cohort = next(c for period in track.periods for c in period if c.id == cohort_id)
        done = []
        for course in track.courses:
            if not any(attempts.get(a.id) for a in course.assignments):
                continue
            results = []
            for assignment in course.assignments:
                status, score, maximum, final_at = _standing(assignment, attempts.get(assignment.id, []),
                                                             cohort.deadlines[assignment.id], now, course.mark)
                results.append(AssignmentResult(assignment.slug, status, score, maximum,
                                                final_at if score is not None else None))
            course_spans = [(start, min(stop, now)) for start, stop in spans.get(course.id, []) if start <= now]
            hours = sum((end - start).total_seconds() for start, end in course_spans) / 3600.0
            rule = course.rule
            reached = hours_reached(course_spans, rule.min_lab_hours) if rule.min_lab_hours else None
            outcome = judge(rule, results, lab_hours=hours, lab_hours_reached_at=reached)
            if not outcome.met:
                continue
            completed = min(outcome.completed_at or now, now)
            recorded = min(completed + dt.timedelta(seconds=rng.uniform(30, 900)), now)
            row = {"track_id": track.id, "course_id": course.id, "completed_at": completed, "recorded_at": recorded,
                   "score_percent": outcome.score_percent, "lab_hours": round(outcome.lab_hours, 2),
                   "evidence": {"rule": rule.as_json(), "conditions": [c.as_json() for c in outcome.conditions]},
                   "withdrawn_at": None, "withdrawn_reason": None}
            story.completions.append((row, course.subject))
            done.append(row)
        if done and len(done) == len(track.courses):
            completed = max(r["completed_at"] for r in done)
            row = {"track_id": track.id, "course_id": None, "completed_at": completed,
                   "recorded_at": max(r["recorded_at"] for r in done), "score_percent": None,
                   "lab_hours": round(sum(r["lab_hours"] for r in done), 2),
                   "evidence": {"courses": [c.id for c in track.courses]}, "withdrawn_at": None,
                   "withdrawn_reason": None}
            story.completions.append((row, track.subject))


# --- writing -----------------------------------------------------------------------------------


def _insert(session: Session, table: Table, rows: list[dict[str, Any]], *, returning: bool = False) -> list[int]:
    """Insert ``rows`` in batches (Core executemany); with ``returning`` the new ids, in the rows' order.

    A JSON column left out of the rows stays SQL NULL (a ``None`` given would be JSON ``null``).
    """
    from sqlalchemy import insert

    ids: list[int] = []
    if not rows:
        return ids
    if session.get_bind().dialect.driver == "psycopg":
        if returning:  # ids taken from the table's sequence, as the column default would take them
            from sqlalchemy import text

            ids = list(session.scalars(text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) "
                                            "FROM generate_series(1, :n)"),
                                       {"table": f'"{table.name}"', "n": len(rows)}))
            rows = [{"id": new_id, **row} for new_id, row in zip(ids, rows, strict=True)]
        _copy(session, table, rows)
        return ids
    for start in range(0, len(rows), BATCH):
        batch = rows[start:start + BATCH]
        if returning:
            statement = insert(table).returning(table.c.id, sort_by_parameter_order=True)
            ids.extend(session.execute(statement, batch).scalars().all())
        else:
            session.execute(insert(table), batch)
    return ids


def _copy(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """PostgreSQL's COPY, in the session's transaction: several times faster than INSERT for millions of rows.

    The values are what the columns' types would send: aware datetimes, enum names as text, JSON as
    text (every row here holds plain values of those kinds).
    """
    import json

    from sqlalchemy import JSON

    columns = list(rows[0])
    encoded = [isinstance(table.c[name].type, JSON) for name in columns]
    driver = session.connection().connection.driver_connection
    names = ", ".join(f'"{name}"' for name in columns)
    with driver.cursor() as cursor, cursor.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy:
        for row in rows:
            copy.write_row([(json.dumps(row[name]) if row[name] != [] else "[]")
                            if encode and row[name] is not None else row[name]
                            for name, encode in zip(columns, encoded, strict=True)])


def _write(session: Session, stories: list[_Story], world: _World, signer: _Signer, counts: dict[str, int]) -> None:
    """One chunk of learners and all they did."""
    from academy.certificates.models import Certificate
    from academy.completion.models import Completion
    from academy.enrollment.models import Enrollment, EnrollmentEvent
    from academy.grading.models import CellScore, Submission
    from academy.labs.models import LabSession
    from academy.users.models import User

    user_ids = _insert(session, User.__table__, [s.user for s in stories], returning=True)
    enrollments, events, labs, submissions, completions = [], [], [], [], []
    cells: list[list[dict[str, Any]]] = []
    for story, uid in zip(stories, user_ids, strict=True):
        for row, history in story.enrollments:
            row["user_id"] = uid
            enrollments.append((row, history))
        for row, _bound in story.labs:
            row.update(user_id=uid, hub_user=f"u{uid}")
            labs.append(row)
        for row in story.submissions:
            row["user_id"] = uid
            submissions.append(row)
        cells.extend(story.cells)
        for row, subject in story.completions:
            row["user_id"] = uid
            completions.append((row, subject, story))
    enrollment_ids = _insert(session, Enrollment.__table__, [row for row, _h in enrollments], returning=True)
    for (_row, history), eid in zip(enrollments, enrollment_ids, strict=True):
        for event in history:
            event["enrollment_id"] = eid
            events.append(event)
    _insert(session, EnrollmentEvent.__table__, events)
    _insert(session, LabSession.__table__, labs)
    submission_ids = _insert(session, Submission.__table__, submissions, returning=True)
    _insert(session, CellScore.__table__, [{**cell, "submission_id": sid}
                                           for sid, own in zip(submission_ids, cells, strict=True) for cell in own])
    if submission_ids and session.get_bind().dialect.driver == "psycopg":
        # COPY goes around the session events that keep the gradebook's cells (INSERT goes through them)
        _kept_cells(session, world, submissions, submission_ids, cells)
    completion_ids = _insert(session, Completion.__table__, [row for row, _s, _story in completions], returning=True)
    certificates = _certificates(world, completions, completion_ids, signer)
    _insert(session, Certificate.__table__, certificates)
    counts["learners"] += len(stories)
    counts["enrollments"] += len(enrollments)
    counts["enrollment_events"] += len(events)
    counts["lab_sessions"] += len(labs)
    counts["submissions"] += len(submissions)
    counts["completions"] += len(completions)
    counts["track_completions"] += sum(1 for row, _s, _story in completions if row["course_id"] is None)
    counts["certificates"] += len(certificates)


def _kept_cells(session: Session, world: _World, submissions: list[dict[str, Any]], ids: list[int],
                cells: list[list[dict[str, Any]]]) -> None:
    """The gradebook's kept cells of the attempts just copied, computed as the session events would."""
    from academy.teaching.cells import row_of
    from academy.teaching.models import GradebookCell

    pairs: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    by_submission: dict[int, list[dict[str, Any]]] = {}
    for row, sid, own in zip(submissions, ids, cells, strict=True):
        pairs[(row["user_id"], row["assignment_id"])].append({**row, "id": sid})
        by_submission[sid] = own
    rows = [row_of(world.assignments[assignment_id], user_id, attempts, by_submission)
            for (user_id, assignment_id), attempts in pairs.items()]
    _insert(session, GradebookCell.__table__, [row for row in rows if row is not None])


def _certificates(world: _World, completions: list[tuple[dict[str, Any], tuple[Any, ...], _Story]],
                  ids: list[int], signer: _Signer) -> list[dict[str, Any]]:
    """The certificate of each completion, frozen and signed as ``certificates.services.issue`` does."""
    from academy.certificates.models import Certificate
    from academy.certificates.services import ALPHABET, CODE_LENGTH, statement_of

    tracks = {t.id: t for t in world.tracks}
    rows, statements = [], []
    for (row, subject, story), cid in zip(completions, ids, strict=True):
        kind, slug, title_ko, title_en, hours, competencies = subject
        rng = random.Random(f"{world.seed}/certificate/{story.email}/{kind}/{slug}")
        raw = "".join(rng.choice(ALPHABET) for _ in range(CODE_LENGTH))
        track = tracks[row["track_id"]]
        values = {"code": f"{raw[:4]}-{raw[4:8]}-{raw[8:]}", "completion_id": cid, "user_id": row["user_id"],
                  "kind": kind, "holder_name": story.user["name"], "title_ko": title_ko, "title_en": title_en,
                  "track_title_ko": track.title_ko, "track_title_en": track.title_en, "hours": hours,
                  "competencies": competencies, "completed_at": row["completed_at"].replace(microsecond=0),
                  "issued_at": row["recorded_at"].replace(microsecond=0), "key_id": signer.kid, "credential": "",
                  "revoked_at": None, "revoked_reason": None, "revoked_by_id": None}
        statements.append(statement_of(Certificate(**values), story.email, slug))
        rows.append(values)
    for values, credential in zip(rows, signer.sign(statements), strict=True):
        values["credential"] = credential
    return rows


def _settle_cohorts(session: Session, world: _World) -> None:
    """Seats taken and capacity from the enrollments: a cohort with a waiting list is full."""
    from sqlalchemy import bindparam, func, select, update

    from academy.enrollment.models import Cohort, Enrollment, EnrollmentStatus

    ids = [c.id for t in world.tracks for p in t.periods for c in p]
    seats: dict[int, int] = dict.fromkeys(ids, 0)
    waiting: set[int] = set()
    for start in range(0, len(ids), 1000):
        part = ids[start:start + 1000]
        for cohort_id, status, count in session.execute(
                select(Enrollment.cohort_id, Enrollment.status, func.count()).where(Enrollment.cohort_id.in_(part))
                .group_by(Enrollment.cohort_id, Enrollment.status)):
            if status is EnrollmentStatus.enrolled:
                seats[cohort_id] = count
            elif status is EnrollmentStatus.waitlisted:
                waiting.add(cohort_id)
    rows = []
    for cohort_id, taken in seats.items():
        if cohort_id in waiting and taken:
            capacity = taken
        else:
            capacity = max(10, math.ceil((taken + max(2, taken * 0.15)) / 5) * 5)
        rows.append({"cid": cohort_id, "taken": taken, "new_capacity": capacity})
    statement = (update(Cohort.__table__).where(Cohort.__table__.c.id == bindparam("cid"))
                 .values(seats_taken=bindparam("taken"), capacity=bindparam("new_capacity")))
    session.connection().execute(statement, rows)


class _Signer:
    """Signs certificate credentials with the current certificate key (about 0.3 ms each)."""

    def __init__(self, issuer: Issuer) -> None:
        from academy.certificates.keys import current_key

        self.base_url = issuer.base_url
        self.key = current_key(issuer.data_dir)
        self.kid = self.key.kid

    def sign(self, statements: list[Statement]) -> list[str]:
        """The compact JWS of each statement, in order."""
        from academy.certificates import credential

        return [credential.sign(s, self.base_url, self.key) for s in statements]


_FAMILY_PICK = _Pick(FAMILY, [w for _k, _r, w in FAMILY])
_REGION_PICK = _Pick(list(REGION_WEIGHTS), [w for w, _code in REGION_WEIGHTS.values()])
_INDUSTRY_PICK = _Pick(list(INDUSTRY_WEIGHTS), list(INDUSTRY_WEIGHTS.values()))
_JOB_PICK = _Pick(list(JOB_ROLE_WEIGHTS), list(JOB_ROLE_WEIGHTS.values()))


# --- the command -------------------------------------------------------------------------------


@click.command("synth")
@click.option("--learners", type=int, default=None, help="How many synthetic learners (at least 1).")
@click.option("--seed", type=int, default=1, show_default=True, help="The same seed gives the same academy.")
@click.option("--companies", type=int, default=None, help="Employers [default: max(3, learners // 50)].")
@click.option("--courses", type=int, default=0, show_default=True,
              help="Add synthetic tracks and courses (10 assignments each) until this many courses are active; "
                   "0: only the catalogue loaded by `academy init`.")
@click.option("--now", "now_text", default=None, help="End of the synthetic year, ISO 8601 [default: now].")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@with_appcontext
def synth_command(learners: int | None, seed: int, companies: int | None, courses: int, now_text: str | None,
                  as_json: bool) -> None:
    """Fill the database with a deterministic synthetic academy for benchmarks and demos."""
    import json

    from academy.certificates.services import Issuer
    from academy.errors import AcademyError
    from academy.extensions import db

    def fail(message: str) -> NoReturn:
        click.echo(f"error: {message}", err=True)
        sys.exit(2)

    if learners is None:
        fail("give the number of learners: --learners N")
    now = None
    if now_text is not None:
        try:
            now = dt.datetime.fromisoformat(now_text)
        except ValueError:
            fail(f"--now: not an ISO 8601 date and time: {now_text!r}")
        now = now.replace(tzinfo=dt.UTC) if now.tzinfo is None else now
    progress = None if learners <= CHUNK else (lambda line: click.echo(f"  {line}", err=True))
    try:
        report = synthesize(db.session, learners=learners, seed=seed, companies=companies, courses=courses, now=now,
                            issuer=Issuer.from_app(), progress=progress)
    except AcademyError as exc:
        db.session.rollback()
        fail(str(exc))
    click.echo(json.dumps(report.as_json()) if as_json else report.summary())
