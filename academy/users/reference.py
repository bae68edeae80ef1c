"""Reference lists used on registration: Gyeongbuk regions, industries, job roles.

Codes are stored; labels are translated when shown.
"""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

# The 22 cities and counties of Gyeongsangbuk-do (Gunwi-gun joined Daegu in 2023),
# plus an entry for companies outside the province.
REGIONS: dict[str, object] = {
    "pohang": _l("Pohang-si"),
    "gyeongju": _l("Gyeongju-si"),
    "gimcheon": _l("Gimcheon-si"),
    "andong": _l("Andong-si"),
    "gumi": _l("Gumi-si"),
    "yeongju": _l("Yeongju-si"),
    "yeongcheon": _l("Yeongcheon-si"),
    "sangju": _l("Sangju-si"),
    "mungyeong": _l("Mungyeong-si"),
    "gyeongsan": _l("Gyeongsan-si"),
    "uiseong": _l("Uiseong-gun"),
    "cheongsong": _l("Cheongsong-gun"),
    "yeongyang": _l("Yeongyang-gun"),
    "yeongdeok": _l("Yeongdeok-gun"),
    "cheongdo": _l("Cheongdo-gun"),
    "goryeong": _l("Goryeong-gun"),
    "seongju": _l("Seongju-gun"),
    "chilgok": _l("Chilgok-gun"),
    "yecheon": _l("Yecheon-gun"),
    "bonghwa": _l("Bonghwa-gun"),
    "uljin": _l("Uljin-gun"),
    "ulleung": _l("Ulleung-gun"),
    "outside": _l("Outside Gyeongbuk"),
}

# Official Korean names, fixed (not translations): employee CSV files name regions this
# way, so the importer must keep accepting them whatever the catalogue says.
REGION_NAMES_KO: dict[str, str] = {
    "pohang": "포항시", "gyeongju": "경주시", "gimcheon": "김천시", "andong": "안동시", "gumi": "구미시",
    "yeongju": "영주시", "yeongcheon": "영천시", "sangju": "상주시", "mungyeong": "문경시", "gyeongsan": "경산시",
    "uiseong": "의성군", "cheongsong": "청송군", "yeongyang": "영양군", "yeongdeok": "영덕군", "cheongdo": "청도군",
    "goryeong": "고령군", "seongju": "성주군", "chilgok": "칠곡군", "yecheon": "예천군", "bonghwa": "봉화군",
    "uljin": "울진군", "ulleung": "울릉군", "outside": "경북 외 지역",
}

INDUSTRIES: dict[str, object] = {
    "auto_parts": _l("Automotive parts"),
    "battery": _l("Secondary batteries"),
    "steel": _l("Steel and metals"),
    "electronics": _l("Electronics and semiconductors"),
    "energy": _l("Energy"),
    "chemicals": _l("Chemicals and materials"),
    "machinery": _l("Machinery and equipment"),
    "textiles": _l("Textiles"),
    "food": _l("Food processing"),
    "other": _l("Other manufacturing"),
}

JOB_ROLES: dict[str, object] = {
    "production": _l("Production / shop floor"),
    "quality": _l("Quality control"),
    "maintenance": _l("Equipment maintenance"),
    "rnd": _l("R&D / engineering"),
    "it": _l("IT / data"),
    "management": _l("Management"),
    "office": _l("Office / administration"),
    "sales": _l("Sales / purchasing"),
    "other": _l("Other"),
}


def normalize_business_number(value: str) -> str:
    """Return a business registration number as ``XXX-XX-XXXXX``.

    Raises ValueError when it does not have ten digits or its check digit is wrong.
    """
    digits = [c for c in value if c.isdigit()]
    if len(digits) != 10 or len(digits) != len(value.replace("-", "").replace(" ", "")):
        raise ValueError("a business registration number has ten digits (XXX-XX-XXXXX)")
    nums = [int(c) for c in digits]
    weights = [1, 3, 7, 1, 3, 7, 1, 3, 5]
    total = sum(n * w for n, w in zip(nums[:9], weights, strict=True))
    total += (nums[8] * 5) // 10
    check = (10 - total % 10) % 10
    if check != nums[9]:
        raise ValueError("the check digit of the business registration number is wrong")
    text = "".join(digits)
    return f"{text[:3]}-{text[3:5]}-{text[5:]}"
