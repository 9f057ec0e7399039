"""Word queries on a library without a text tower: match the words against the ImageNet classes
stored as labels (top-5 per photo).

Each class answers to its own names ("tabby, tabby cat") and to the broader words people use
("cat", "dog", "bird", "car", "beach"). ImageNet-1k lists only leaf classes, so those broader
words come from the table below: contiguous runs of the class list (ordered by WordNet id, hence
grouped by kind) and hand-picked classes elsewhere. Every name in it is checked against the real
class list when the vocabulary is built, so a typo fails loudly instead of matching nothing.

Words for what ImageNet has no class of are left out on purpose: "person" or "people" would
only reach ballplayer, groom and scuba diver, so they get the error that points to CLIP.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from searchapp.encoders.imagenet import imagenet_class_names

# broad word -> class index ranges (inclusive) and/or first names of classes
HYPERNYMS: dict[str, tuple[tuple[tuple[int, int], ...], tuple[str, ...]]] = {
    "animal": (((0, 397),), ()),
    "fish": (((0, 6), (389, 397)), ()),
    "bird": (((7, 24), (80, 100), (127, 146)), ()),
    "amphibian": (((25, 32),), ()),
    "frog": (((30, 32),), ()),
    "turtle": (((33, 37),), ()),
    "lizard": (((38, 48),), ()),
    "reptile": (((33, 68),), ()),
    "snake": (((52, 68),), ()),
    "spider": (((72, 77),), ()),
    "crab": (((118, 121), (125, 125)), ()),
    "whale": (((147, 148),), ()),
    "dog": (((151, 268),), ()),
    "wolf": (((269, 271),), ()),
    "fox": (((277, 280),), ()),
    "cat": (((281, 285),), ()),
    "big cat": (((286, 293),), ()),
    "bear": (((294, 297), (387, 388)), ()),
    "insect": (((300, 326),), ()),
    "beetle": (((300, 307),), ()),
    "butterfly": (((321, 326),), ()),
    "rabbit": (((330, 332),), ()),
    "rodent": (((333, 338),), ()),
    "horse": (((339, 339),), ()),
    "pig": (((341, 343),), ()),
    "cattle": (((345, 347),), ()),
    "cow": (((345, 345),), ()),
    "sheep": (((348, 349),), ()),
    "monkey": (((365, 384),), ()),
    "ape": (((365, 368),), ()),
    "elephant": (((101, 101), (385, 386)), ()),
    "panda": (((387, 388),), ()),
    "car": (
        (),
        (
            "beach wagon",
            "cab",
            "convertible",
            "jeep",
            "limousine",
            "minivan",
            "Model T",
            "racer",
            "sports car",
            "police van",
            "ambulance",
            "go-kart",
        ),
    ),
    "truck": (
        (),
        ("garbage truck", "moving van", "pickup", "tow truck", "trailer truck", "fire engine"),
    ),
    "bus": ((), ("minibus", "school bus", "trolleybus")),
    "boat": (
        (),
        (
            "canoe",
            "catamaran",
            "container ship",
            "fireboat",
            "gondola",
            "lifeboat",
            "liner",
            "pirate",
            "schooner",
            "speedboat",
            "trimaran",
            "yawl",
            "submarine",
            "aircraft carrier",
        ),
    ),
    "ship": ((), ("container ship", "liner", "pirate", "schooner", "aircraft carrier")),
    "plane": ((), ("airliner", "warplane")),
    "aircraft": ((), ("airliner", "warplane", "airship")),
    "train": (
        (),
        ("bullet train", "electric locomotive", "freight car", "steam locomotive", "passenger car"),
    ),
    "bicycle": ((), ("bicycle-built-for-two", "mountain bike", "tricycle", "unicycle")),
    "bike": ((), ("bicycle-built-for-two", "mountain bike", "moped", "motor scooter")),
    "motorcycle": ((), ("moped", "motor scooter")),
    "coffee": ((), ("espresso", "coffee mug", "coffeepot", "espresso maker")),
    "fruit": (
        (),
        (
            "Granny Smith",
            "strawberry",
            "orange",
            "lemon",
            "fig",
            "pineapple",
            "banana",
            "jackfruit",
            "custard apple",
            "pomegranate",
        ),
    ),
    "vegetable": (
        (),
        (
            "head cabbage",
            "broccoli",
            "cauliflower",
            "zucchini",
            "spaghetti squash",
            "acorn squash",
            "butternut squash",
            "cucumber",
            "artichoke",
            "bell pepper",
            "cardoon",
        ),
    ),
    "food": (((924, 969),), ()),
    "flower": ((), ("daisy", "yellow lady's slipper")),
    "mushroom": (((991, 997),), ("mushroom",)),
    "beach": ((), ("seashore", "sandbar")),
    "sea": ((), ("seashore", "coral reef", "promontory", "sandbar")),
    "coast": ((), ("seashore", "promontory", "cliff")),
    "lake": ((), ("lakeside",)),
    "mountain": ((), ("alp", "volcano", "cliff", "valley")),
    "landscape": ((), ("alp", "valley", "lakeside", "seashore", "cliff", "promontory")),
    "building": (
        (),
        (
            "barn",
            "boathouse",
            "castle",
            "church",
            "cinema",
            "greenhouse",
            "library",
            "monastery",
            "mosque",
            "palace",
            "planetarium",
            "prison",
            "restaurant",
            "bakery",
            "barbershop",
            "bookshop",
            "butcher shop",
            "confectionery",
            "grocery store",
            "shoe shop",
            "tobacco shop",
            "toyshop",
            "stupa",
            "triumphal arch",
        ),
    ),
    "church": ((), ("church", "monastery", "mosque", "stupa")),
    "bridge": ((), ("steel arch bridge", "suspension bridge", "viaduct")),
    "space": ((), ("space shuttle", "missile", "projectile", "space heater")),
    "rocket": ((), ("missile", "projectile", "space shuttle")),
    "laptop": ((), ("laptop", "notebook")),  # ImageNet tells the two apart; people do not
    "computer": ((), ("desktop computer", "laptop", "notebook", "hand-held computer")),
    "phone": ((), ("cellular telephone", "dial telephone", "pay-phone")),
    "chair": ((), ("barber chair", "folding chair", "rocking chair", "throne")),
    "table": ((), ("dining table", "desk", "pool table")),
    "cup": ((), ("cup", "coffee mug", "measuring cup")),
    "sofa": ((), ("studio couch",)),
    "bottle": (
        (),
        ("beer bottle", "pill bottle", "pop bottle", "water bottle", "wine bottle", "water jug"),
    ),
    "tv": ((), ("television",)),
}

# words that mean the union of other words' classes
ALIASES: dict[str, tuple[str, ...]] = {
    "puppy": ("dog",),
    "kitten": ("cat",),
    "primate": ("monkey",),
    "vehicle": ("car", "truck", "bus"),
    "airplane": ("plane",),
    "couch": ("sofa",),
    "mobile": ("phone",),
    "cellphone": ("phone",),
}

STOPWORDS = frozenset(
    {
        "a",
        "an",
        "the",
        "of",
        "on",
        "in",
        "at",
        "by",
        "with",
        "and",
        "or",
        "to",
        "for",
        "from",
        "near",
        "under",
        "over",
        "photo",
        "photos",
        "picture",
        "pictures",
        "image",
        "images",
        "some",
        "my",
    }
)


def short_name(class_name: str) -> str:
    """A class's first name: "tabby" for "tabby, tabby cat"."""
    return class_name.split(",")[0].strip()


def normalise(word: str) -> str:
    word = word.lower().strip()
    for suffix, repl in (("ies", "y"), ("ches", "ch"), ("shes", "sh"), ("xes", "x"), ("s", "")):
        if word.endswith(suffix) and len(word) > len(suffix) + 2 and not word.endswith("ss"):
            return word[: -len(suffix)] + repl
    return word


@dataclass(frozen=True)
class Vocabulary:
    class_names: tuple[str, ...]  # as stored in region_labels.name
    by_term: dict[str, frozenset[str]]  # normalised word or phrase -> stored names


@lru_cache(maxsize=1)
def imagenet_vocabulary() -> Vocabulary:
    names = imagenet_class_names()
    first_name = {short_name(name): name for name in names}
    by_term: dict[str, set[str]] = {}

    def add(term: str, name: str) -> None:
        by_term.setdefault(term, set()).add(name)

    for name in names:
        for synonym in name.split(","):
            phrase = " ".join(normalise(w) for w in re.findall(r"[\w'-]+", synonym))
            if phrase:
                add(phrase, name)
    for word, (ranges, picked) in HYPERNYMS.items():
        for low, high in ranges:
            for index in range(low, high + 1):
                add(word, names[index])
        for first in picked:
            if first not in first_name:
                raise ValueError(f"label table names {first!r}, which is no ImageNet class")
            add(word, first_name[first])
    for word, parts in ALIASES.items():
        for part in parts:
            for name in by_term[part]:
                add(word, name)
    return Vocabulary(names, {term: frozenset(found) for term, found in by_term.items()})


def match_labels(text: str, vocabulary: Vocabulary | None = None) -> dict[str, frozenset[str]]:
    """For each content word or known phrase in the text, the stored class names it matches.
    Longest phrases win: "sports car" matches that class, not every car."""
    vocabulary = vocabulary or imagenet_vocabulary()
    words = [normalise(w) for w in re.findall(r"[\w'-]+", text.lower())]
    matches: dict[str, frozenset[str]] = {}
    position = 0
    while position < len(words):
        for length in range(min(4, len(words) - position), 0, -1):
            phrase = " ".join(words[position : position + length])
            if phrase in vocabulary.by_term and not (length == 1 and phrase in STOPWORDS):
                matches[phrase] = vocabulary.by_term[phrase]
                position += length
                break
        else:
            position += 1
    return matches
