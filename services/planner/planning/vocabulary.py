"""Words the rule-based planner recognises: clothing, places, times and weather, poses, fillers."""

from __future__ import annotations

import re

__all__ = [
    "ACCESSORIES", "CLOTHING", "FILLER", "GERUNDS", "PLACES", "POSE_CUE", "POSE_NOUNS", "PREPOSITIONS", "SCENES",
    "STRIPPED_PREPOSITIONS", "TIMES", "WINDOW_STOP", "hits",
]


def _alternation(words: str) -> re.Pattern[str]:
    """A pattern matching any of the `|`-separated phrases as whole words, plurals included."""
    phrases = sorted({w.strip() for w in words.split("|") if w.strip()}, key=len, reverse=True)
    body = "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in phrases)
    return re.compile(rf"(?<![\w-])(?:{body})(?:e?s)?(?![\w-])", re.IGNORECASE)


CLOTHING = _alternation(
    "dress|gown|sundress|wedding dress|skirt|miniskirt|blouse|shirt|t-shirt|tshirt|tee|tank top|crop top|"
    "sweater|jumper|cardigan|hoodie|sweatshirt|jacket|blazer|coat|trench coat|raincoat|parka|vest|suit|"
    "tuxedo|jeans|pants|trousers|leggings|shorts|overalls|jumpsuit|bikini|swimsuit|swimwear|bathing suit|"
    "lingerie|underwear|pajama|pyjama|robe|bathrobe|kimono|yukata|sari|hanbok|qipao|uniform|costume|"
    "outfit|clothes|clothing|attire|armor|armour|cloak|cape|apron|scrubs|lab coat|sportswear|activewear|"
    "hat|cap|beanie|beret|helmet|crown|tiara|scarf|glasses|sunglasses|eyeglasses|goggles|gloves|boots|shoes|"
    "sneakers|trainers|heels|high heels|sandals|socks|stockings|tights|necklace|earrings|jewelry|jewellery|"
    "bracelet|tie|bow tie|belt|backpack|handbag|purse|mask|veil|bandana|headband|corset|polo|turtleneck"
)
# Worn with an outfit rather than instead of it: "wearing a scarf" adds a scarf, keeps the rest.
ACCESSORIES = _alternation(
    "hat|cap|beanie|beret|helmet|crown|tiara|scarf|glasses|sunglasses|eyeglasses|goggles|gloves|necklace|"
    "earrings|jewelry|jewellery|bracelet|tie|bow tie|belt|backpack|handbag|purse|mask|veil|bandana|headband|"
    "boots|shoes|sneakers|trainers|heels|high heels|sandals|socks"
)
SCENES = _alternation(
    "beach|seaside|shore|coast|ocean|sea|island|lake|river|waterfall|pool|swimming pool|gym|fitness studio|"
    "cafe|café|coffee shop|restaurant|bar|pub|club|nightclub|park|garden|forest|woods|jungle|mountain|hill|"
    "valley|desert|field|meadow|farm|countryside|village|city|town|downtown|street|alley|road|bridge|"
    "rooftop|balcony|terrace|office|classroom|school|university|campus|library|museum|gallery|studio|"
    "kitchen|bedroom|living room|bathroom|room|home|house|apartment|mansion|castle|palace|temple|church|"
    "cathedral|shrine|market|mall|shop|store|supermarket|train station|station|subway|metro|train|airport|"
    "boat|yacht|ship|harbor|harbour|pier|dock|stadium|arena|stage|concert|festival|party|carnival|"
    "amusement park|zoo|aquarium|hospital|laboratory|spaceship|space|moon|underwater|cave|ski resort|"
    "slopes|glacier|volcano|canyon|cliff|savanna|vineyard|lounge|hotel|lobby|spa|sauna|hot spring|onsen|"
    "arcade|cinema|theater|theatre|bakery|bookstore|skyscraper|skyline|landscape|backdrop|background|"
    "scenery|tower|eiffel tower|times square|colosseum|big ben|golden gate bridge|neon city|"
    "cyberpunk city|fantasy world|wonderland|snowfield|flower field|sunflower field|cherry blossoms|fireplace|"
    "bed|gala|ballroom|opera|nature|outdoors|indoors|patio|porch|backyard|courtyard|plaza|square|harbourfront"
)
PLACES = _alternation(
    "paris|london|tokyo|kyoto|osaka|new york|nyc|rome|venice|florence|milan|barcelona|madrid|lisbon|berlin|"
    "amsterdam|prague|vienna|istanbul|dubai|seoul|shanghai|beijing|hong kong|singapore|bangkok|bali|hawaii|"
    "sydney|los angeles|san francisco|las vegas|miami|rio de janeiro|rio|mexico city|cairo|marrakech|"
    "santorini|iceland|italy|france|japan|spain|greece|switzerland|alps|egypt|india|china|thailand|mexico|"
    "brazil|canada|scotland|ireland|norway|the tropics|the arctic|antarctica|mars"
)
TIMES = _alternation(
    "sunset|sunrise|dawn|dusk|twilight|golden hour|blue hour|night|nighttime|night time|midnight|noon|midday|"
    "morning|evening|afternoon|daytime|moonlight|starlight|stars|rain|rainy day|snow|snowfall|fog|mist|"
    "storm|thunderstorm|winter|summer|autumn|fall|christmas|candlelight|neon lights|full moon"
)
POSE_NOUNS = _alternation("pose|position|posture|yoga pose|lotus position|stance")

_PRONOUN = r"(?:her|his|their|the)"
# Base forms are excluded after an article so "a walk", "a dance club" or "a wave" are not poses.
_NOT_AFTER_ARTICLE = r"(?<!\ba )(?<!\ban )(?<!\bthe )"
POSE_CUE = re.compile(
    _NOT_AFTER_ARTICLE + r"(?<![\w-])(?:"
    rf"arms (?:crossed|folded|raised|up)|crossed arms|folded arms|cross(?:es|ing)? {_PRONOUN} arms|"
    rf"hands? on {_PRONOUN}? ?hips?|hands? in {_PRONOUN} pockets|hands up|"
    rf"looking over {_PRONOUN} shoulder|look(?:s|ing)? over {_PRONOUN} shoulder|"
    r"look(?:s|ing)? (?:at the camera|at the viewer|at me|away|up|down|back|to the side|into the distance)|"
    r"facing the camera|back to the camera|turn(?:s|ed|ing)? around|head tilted|"
    r"peace sign|thumbs up|blowing a kiss|blow(?:s)? a kiss|taking a selfie|doing yoga|on (?:her|his|their) knees|"
    r"sit(?:s|ting)?|seated|stand(?:s|ing)?|l(?:ie|ies|ying|ay|ays|aying)(?: down)?|reclin(?:e|es|ing)|lounging|"
    r"kneel(?:s|ing)?|squat(?:s|ting)?|crouch(?:es|ing)?|lean(?:s|ing)?|wav(?:e|ing)|walk(?:s|ing)?|"
    r"run(?:s|ning)?|danc(?:e|es|ing)|jump(?:s|ing)?|pos(?:e|es|ing)|stretch(?:es|ing)?|hug(?:s|ging)?|"
    r"hold(?:s|ing)?|read(?:s|ing)?|drink(?:s|ing)|eating|smil(?:e|es|ing)|laugh(?:s|ing)?|wink(?:s|ing)?|"
    r"sleep(?:s|ing)?|playing|swimming|surfing|skiing|cooking|singing|meditating|floating|flying|hiking|climbing|"
    r"typing|sunbathing|relaxing|resting|working|writing|studying|shopping|cycling|biking|skating|skateboarding|"
    r"fishing|gardening|texting|sipping|painting|drawing|talking on the phone|posing"
    r")(?![\w-])",
    re.IGNORECASE,
)
# The first word of a pose, brought to the form "Change her pose: sitting ..." reads best in.
GERUNDS = {
    "sit": "sitting", "sits": "sitting", "stand": "standing", "stands": "standing", "lie": "lying",
    "lies": "lying", "lay": "lying", "lays": "lying", "laying": "lying", "recline": "reclining",
    "reclines": "reclining", "kneel": "kneeling", "kneels": "kneeling", "squat": "squatting",
    "squats": "squatting", "crouch": "crouching", "crouches": "crouching", "lean": "leaning",
    "leans": "leaning", "wave": "waving", "walk": "walking", "walks": "walking", "run": "running",
    "runs": "running", "dance": "dancing", "dances": "dancing", "jump": "jumping", "jumps": "jumping",
    "pose": "posing", "poses": "posing", "stretch": "stretching", "stretches": "stretching", "hug": "hugging",
    "hugs": "hugging", "hold": "holding", "holds": "holding", "read": "reading", "reads": "reading",
    "drinks": "drinking", "smile": "smiling", "smiles": "smiling", "laugh": "laughing", "laughs": "laughing",
    "wink": "winking", "winks": "winking", "sleep": "sleeping", "sleeps": "sleeping", "cross": "crossing",
    "crosses": "crossing", "look": "looking", "looks": "looking", "turn": "turning", "turns": "turning",
    "turned": "turning", "blow": "blowing", "blows": "blowing",
}

PREPOSITIONS = (
    "in front of", "on top of", "next to", "on", "onto", "at", "in", "inside", "into", "to", "by", "near",
    "beside", "under", "underneath", "outside", "across", "along", "through", "among", "amid", "within",
    "atop", "behind", "over", "around", "during",
)
# A place after these reads as a noun phrase ("on a beach" -> "a beach"); others keep their preposition.
STRIPPED_PREPOSITIONS = frozenset({"on", "onto", "at", "in", "inside", "into", "to", "by", "within", "atop"})
# Where the phrase after a preposition ends, for deciding what it names.
WINDOW_STOP = re.compile(
    r"(?<![\w-])(?:" + "|".join(p.replace(" ", r"\s+") for p in PREPOSITIONS)
    + r"|with|wearing|while|who|that|dressed|and|but|or)(?![\w-])",
    re.IGNORECASE,
)
# Words that carry no edit: how people ask ("can you send me a pic of you ...") rather than what.
FILLER = re.compile(
    r"^(?:(?:(?:a|an|another|one|some|new|more|nice|cute)\s+){0,3}(?:photo|picture|pic|image|selfie|shot|snapshot)s?"
    r"(?:\s+of)?(?![\w'-])[\s,]*"
    r"|(?:please|pls|can|could|would|will|you|u|i|i'd|id|want|wanna|like|love|to|see|send|show|give|get|"
    r"make|draw|paint|generate|create|render|take|snap|me|us|yourself|her|him|them|herself|himself|"
    r"themselves|she|he|they|she's|he's|they're|you're|is|are|be|being|now|also|then|just|so|put|place|have|"
    r"let|and|but|with|maybe|how|about|this|time|again|here|there)(?![\w'-])[\s,]*)+",
    re.IGNORECASE,
)


def hits(pattern: re.Pattern[str], text: str) -> list[re.Match[str]]:
    """Every whole-word occurrence of the pattern's phrases in `text`."""
    return list(pattern.finditer(text))
