"""Crisis detection and the crisis protocol answer: offline, deterministic, rule-based.

`detect()` reads a message (and the earlier user turns of its conversation) for signs of
suicidal intent or self-harm. It needs no model, network or store, so the protocol holds
when all of them are down. Rules work on normalised text (see `normalise`):

* strong signs (intent, wishing to be dead, plans, method questions, self-harm, farewell
  notes) make a "crisis" on their own;
* indirect signs (giving things away, "won't be around much longer", feeling a burden,
  no way out, goodbyes) weigh 1 each (a few 1.5): a total of 2, in this message or together
  with earlier turns, make a "crisis"; one alone is a "concern";
* low mood alone ("so sad and lonely") and talk about the topic, about other people or
  fiction, negated or long-past statements are a "concern": answered normally, with care.

Idioms ("this job is killing me", "dead tired", "financial suicide") are blanked before
the rules run. See docs/crisis-protocol.md for the protocol and the limits of detection.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Literal

from bot.safety.resources import Resources, load_resources

Level = Literal["none", "concern", "crisis"]
HISTORY_TURNS = 10  # earlier user turns that still count
CRISIS_SCORE = 2.0

# --- normalisation -----------------------------------------------------------------

_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'", "\u00b4": "'"})
_REWRITES: tuple[tuple[str, str], ...] = (
    # misspellings and euphemisms of the key words
    (r"\bself[\s-]*(harm|injur)", r"self \1"),
    (
        r"\b(?:su[i1!*]c[i1!*]de|s\*icide|sucide|suicde|suiside|suicied|suiscide|sewerslide|sewer slide)(s?)\b",
        r"suicide\1",
    ),
    (r"\b(?:su[i1!*]c[i1!*]dal|sucidal|suicdal|suicidial|suicidel|suisidal)\b", "suicidal"),
    (r"\bunalive(d|s)?\b", r"kill\1"),
    (r"\bunaliving\b", "killing"),
    (r"\bk[1!*]ll|\bkil(?=\b|ing\b)", "kill"),
    (r"\b(?:my ?sle?f|myslef|mysefl|mysself|meself)\b", "myself"),
    (r"(?<!\d)(?<!\d )\bkms\b", "kill myself"),  # not "5 kms"
    (r"\bod'd\b|\boded\b", "overdosed"),  # before "'d" becomes "would"
    # contractions, with or without the apostrophe
    (r"\bcan'?t\b|\bcannot\b", "can not"),
    (r"\bwon'?t\b", "will not"),
    (r"\bain'?t\b", "am not"),
    (r"\b(do|does|did|is|are|was|were|have|has|had|would|should|could|must|need|might)n'?t\b", r"\1 not"),
    (r"\bi'?m\b", "i am"),
    (r"\bi'?ve\b", "i have"),
    (r"\bi'll\b", "i will"),
    (r"\bi'd\b", "i would"),
    (r"\b(it|that|there|what|he|she|who|everything|nothing|life)'s\b", r"\1 is"),
    (r"'re\b", " are"),
    (r"'ll\b", " will"),
    (r"'ve\b", " have"),
    (r"'d\b", " would"),
    # chat shorthand
    (r"\bwanna\b", "want to"),
    (r"\bgonna\b", "going to"),
    (r"\bgotta\b", "got to"),
    (r"\btryna\b", "trying to"),
    (r"\bidk\b", "i do not know"),
    (r"\bu\b", "you"),
    (r"\bur\b", "your"),
    (r"\brn\b", "right now"),
    (r"\b(?:tmrw|tmr|tmrow)\b", "tomorrow"),
    (r"\b(?:tonite|2nite)\b", "tonight"),
    (r"\b(?:cuz|coz|bc|cos)\b", "because"),
    (r"\bppl\b", "people"),
    (r"\banymore\b", "any more"),
    # "od" only where it cannot be an overdraft: "od'd", "od on ...", "going to od"
    (r"\bod(?:ing)?\b(?= on\b)|(?<=to )od\b", "overdose"),
    # "kys" is self-talk after "i", "should", "going to"...; aimed at someone it is abuse
    (r"\b(i|to|should|will|might|just|could|going to|want to|about to)((?: just)?) kys\b", r"\1\2 kill myself"),
    (r"\bkys\b", "kill yourself"),
    (r"\bsh\b(?= ?(?:again|free|clean|urges?)\b)|(?<=\bon )sh\b|(?<=\bfrom )sh\b", "self harm"),
)
_COMPILED_REWRITES = tuple((re.compile(p), r) for p, r in _REWRITES)
_END_VOWEL_RUN = re.compile(r"([aeiou])\1{2,}\b")
_VOWEL_RUN = re.compile(r"([aeiou])\1{2,}")
_CONSONANT_RUN = re.compile(r"([b-df-hj-np-tv-z])\1{2,}")
_OTHER = re.compile(r"[^a-z0-9.,!?;:'\s]+")
_SPACE = re.compile(r"[ \t]+")


def normalise(text: str) -> str:
    """Lowercase, accent-free text with contractions and shorthand expanded; . , ! ? ; : kept."""
    folded = unicodedata.normalize("NFKD", text.translate(_QUOTES))
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch)).casefold()
    folded = _END_VOWEL_RUN.sub(r"\1", folded)  # "dieeee" -> "die", "nooo" -> "no"
    folded = _VOWEL_RUN.sub(r"\1\1", folded)  # "feeeel" -> "feel"
    folded = _CONSONANT_RUN.sub(r"\1\1", folded)  # "killlll" -> "kill"
    for pattern, replacement in _COMPILED_REWRITES:
        folded = pattern.sub(replacement, folded)
    folded = _OTHER.sub(" ", folded).replace("'", "")
    return _SPACE.sub(" ", folded).strip()


def _any(*patterns: str) -> re.Pattern[str]:
    """One compiled alternation of `patterns`."""
    return re.compile("|".join(f"(?:{p})" for p in patterns))


# --- idioms: blanked before any rule runs --------------------------------------------

_IDIOMS = _any(
    r"\b(?:financial|career|social|political|professional|credit|retirement|fashion|commercial|economic|"
    r"electoral|brand|business|dating|tax) suicide\b",
    r"\bsuicide (?:squad|doors?|runs?|sprints?|drills?|wings?|lane|king|jockey|blonde|slide|bid|mission)\b",
    r"\b(?:run|running|ran|do|did|doing) suicides\b",
    r"\b(?:is|are|was|were|been|be|keeps?|kept)(?: \w+ly| just)? killing me\b",
    r"\bkill(?:ing|ed|s)? (?:it|the game)\b",
    r"\b(?:could|would|i would|i had) kill (?:for|to)\b",
    r"\b(?:dying|dead) (?:to|for) (?:see|know|try|get|go|meet|hear|have|watch|read|ask|find out)\b",
    r"\b(?:is|are|was|were|be|looks?) to die for\b",
    r"\b(?:dying|died|die|dead) (?:of|from|with)? ?(?:laughter|laughing|embarrassment|shame|boredom|curiosity|"
    r"cringe|heat|thirst|hunger)\b",
    r"\bdead (?:tired|broke|serious|wrong|last|set|on time|in the water|end|cent(?:er|re)|weight|beat)\b",
    r"\b(?:phone|battery|laptop|car|computer|plant|tv|wifi|internet|printer|charger|startup|project|company|"
    r"business|account|engine|headphones|tablet|console|fridge|bulb|app)s? (?:has |had |just )?"
    r"(?:died|is dead|was dead|dead)\b",
    r"\bkiller (?:deal|app|feature|workout|price|views|idea|bargain|combo|offer|rate|interview)\b",
    r"\bmurder(?:ing|ed|s)? (?:this|that|the|a|my) \w+",
    r"\bkill me now\b",
    r"\bshoot me\b",
    r"\boverdos\w* (?:on|of) (?:caffeine|coffee|sugar|chocolate|netflix|tv|energy drinks?|carbs|candy|work|"
    r"screen time|social media|news|cheese)\b",
    r"\bcut(?:ting)? myself (?:off|some slack|a break|in)\b",
    r"\bburn(?:ed|t|ing)? myself out\b",
    r"\b(?:shot|shoot|shooting) myself in the foot\b",
    r"\b(?:drown|drowning|drowned|bury|burying|buried) myself in\b",
    r"(?:^|(?<=[.!?] )|\b(?:am|been|was|keep|kept)(?: \w+ly| just)? )killing myself (?:at (?:work|the gym|my job)|"
    r"with (?:work|overtime|shifts|hours|studying|this \w+)|over (?:this|that|a|the) \w+|"
    r"for (?:this|that|a|the|my) (?:job|company|raise|promotion|deadline|boss|exam|degree|business)|"
    r"to (?:pay|get|make|finish|meet|save|keep|hit|earn|afford|pass)|working|studying|training)\b",
    r"\bkilled myself (?:at|for|over|studying|working|training|trying|to (?:pay|get|make|finish|meet|save|hit|"
    r"earn|afford|pass))\b",
    r"\b(?:hurt|hurting|injured|cut|cutting|burn|burned|burnt|burning|pulled|sprained|bumped) myself"
    r"(?: \w+){0,3}? (?:while|shaving|cooking|chopping|slicing|cleaning|lifting|playing|running|hiking|skiing|"
    r"moving|working out|exercising|gardening|at (?:the gym|work|practice|football|soccer|training)|"
    r"on (?:a|the|some|my) (?:knife|glass|stove|oven|pan|tin|can|paper|fence|nail|grill|iron|table|door|corner)|"
    r"in the kitchen|by accident|by mistake)\b",
    r"\baccidentally (?:hurt|cut|burned|burnt|injured) myself\b",
    r"\bhurting myself (?:financially|by)\b",
    r"\b(?:poison|poisoning) myself with (?:junk|fast food|sugar|caffeine|energy drinks|takeout|takeaway)\b",
    r"\b(?:would|had) rather (?:die|be dead) than (?!(?:keep|go on|continue|live|living|wake up|face|be alive|"
    r"stay alive|be here)\b)",
    r"\b(?:bored|scared|worried|sick|tired|frozen|freezing|starving|stressed) to death\b",
    r"\bhope to die\b",
    r"\bthe death of (?:me|her|him)\b",
    r"\bgoodbye (?:\d{4}|monday|work|summer|winter|old)\b",
)

# --- context around a match -------------------------------------------------------------

_END = (
    r"(?=\s*(?:$|[.!?,;:]|(?:and|but|because|so|or|i|any more|any longer|already|right now|now|tonight|today|"
    r"tomorrow|soon|sometimes|every|everyday|honestly|tbh|lol|lmao|fr|seriously|please|too|really|at all|ngl|"
    r"either|anyway|though|tho|like this|forever|instead|before|this|by|after|lately)\b))"
)
_SENTENCE_BREAK = re.compile(r"[.!?;:\n]")
_CLAUSE_BREAK = re.compile(r",|\b(?:but|and|so|because|though|although|yet|while|then)\b")
_NEGATED = re.compile(
    r"\b(?:not|never|no|nor|without)(?: (?:really|actually|ever|even|seriously|going|planning|trying|intending|"
    r"intend|intention|intentions|plan|plans|thoughts|desire|wish|want|wanting|to|of|on|about|would|will|have|had|"
    r"any|the|urge|urges|need|do|doing|could|feel|feeling|considering|thinking|thought|be|gonna))* ?$"
)
_REPORTED = re.compile(
    r"\b(?:told|tell|telling|tells|said|says|saying|yelled|texted|messaged|commented|posted|replied)(?: me| us)?"
    r"(?: that)?(?: i should| to| i ought to)?(?: just)? ?$"
)
_INNER_VOICE = re.compile(r"\b(?:my (?:mind|head|brain|thoughts|depression)|voices?)\b")  # "my mind tells me to ..."
_FIRST = frozenset({"i", "me", "myself"})
# a person word right after one of these is an object ("a problem for anyone"), not who the sentence is about
_OBJECT_MARKERS = frozenset(
    {"for", "to", "with", "without", "about", "at", "from", "of", "by", "than", "like", "on", "told", "tell", "tells"}
    | {"telling", "miss", "love", "loved", "thank", "call", "ask", "asked", "help"}
)
_PERSON = re.compile(
    r"(?:\b(\w+) )?(?:(?:my|our|his|her|their|your) )?\b(i|me|myself|he|she|him|her|himself|herself|they|them|"
    r"themselves|themself|you|yourself|someone|somebody|anyone|people|person|friend|friends|brother|sister|mom|mum|"
    r"mother|dad|father|son|daughter|kid|kids|child|"
    r"children|partner|wife|husband|boyfriend|girlfriend|bf|gf|coworker|colleague|roommate|flatmate|cousin|aunt|"
    r"uncle|grandma|grandpa|grandmother|grandfather|neighbou?r|teen|teenager|student|client|customer|patient|"
    r"character|celebrity|actor|actress|singer|classmate|boss|nephew|niece)\b"
)
# a person word before "who" is the subject of what follows, even as an object ("talk to my friend who ...")
_WHO = re.compile(r"\b(\w+) (?:who|whos) (?:\w+ ){0,3}$")
# "can you help me ..." is about the writer, not about "you"
_ASKING = frozenset({"can", "could", "would", "will", "please", "do", "did"})
_FICTION = re.compile(
    r"\b(?:character|novel|book|movie|film|show|series|story|song|lyrics|episode|game|article|news|documentary|"
    r"podcast|poem|essay|villain|protagonist|anime|fiction|headline)\b"
)
_LONG_AGO = re.compile(
    r"\b(?:years ago|\d+ (?:years|yrs|months) ago|a long time ago|long ago|when i was (?:a |an )?(?:kid|child|teen|"
    r"teenager|young|younger|little|in \w+ school|in college|at university|\d+)|as a (?:kid|child|teen|teenager)|"
    r"in (?:high school|middle school|college|university|my (?:teens|twenties|20s|youth))|in (?:19|20)\d\d|back then|"
    r"used to|last year)\b"
)
_STILL_NOW = re.compile(
    r"\b(?:again|lately|these days|recently|still|right now|tonight|today|this (?:week|morning|month)|"
    r"last (?:night|week)|yesterday|keep|want|urges?|thinking|planning)\b"
)

def _people(text: str) -> list[str]:
    """The person words in `text` that can be who a sentence is about, in order (the writer always counts)."""
    return [
        word
        for before, word in _PERSON.findall(text)
        if word in _FIRST or (before not in _OBJECT_MARKERS and not (word == "you" and before in _ASKING))
    ]


def _sentence(text: str, start: int, end: int) -> tuple[int, str]:
    """Where the sentence around text[start:end] begins, and the sentence."""
    begin = max((m.end() for m in _SENTENCE_BREAK.finditer(text, 0, start)), default=0)
    after = _SENTENCE_BREAK.search(text, end)
    return begin, text[begin : after.start() if after else len(text)]


# --- the rules ---------------------------------------------------------------------------

Kind = Literal["strong", "indirect", "mood", "topic"]
# Whose state a rule describes: "self" (the match names the speaker: "kill myself"),
# "any" (a subject may be dropped: "want to die"; checked for he/she/my friend),
# "first" (only with an explicit "i"/"me"; else it is talk about the topic), "none" (no check).
Subject = Literal["self", "any", "first", "none"]


@dataclass(frozen=True)
class _Rule:
    reason: str
    kind: Kind
    subject: Subject
    pattern: re.Pattern[str]
    weight: float = 1.0


def _rule(reason: str, kind: Kind, subject: Subject, *patterns: str, weight: float = 1.0) -> _Rule:
    return _Rule(reason, kind, subject, _any(*patterns), weight)


_PILLS = r"(?:pills|tablets|meds|medication|medicine|painkillers|antidepressants|sleeping pills|\w+ pills)"
_DRUGS = (
    r"(?:pills|tablets|meds|medication|medicine|painkillers|antidepressants|ibuprofen|tylenol|paracetamol|"
    r"acetaminophen|aspirin|insulin|xanax|benadryl|opioids|oxy|heroin|fentanyl)"
)
_NOT_LIFE_OBJECT = (
    r"(?! (?:savings|insurance|story|back|in|into|together|goals?|plans?|seriously|over|choices|lessons?))"
)

RULES: tuple[_Rule, ...] = (
    # -- strong: each one alone is a crisis
    _rule(
        "direct_intent", "strong", "self",
        rf"\b(?:kill|killing|killed|kills|off|offing|end|ending|take|taking) (?:myself|my own life|my life)\b"
        rf"{_NOT_LIFE_OBJECT}",
        r"\b(?:hang|hanging|hanged|drown|drowning|poison|poisoning|shoot|shooting|shot|gas|gassing|electrocute|"
        r"suffocate|starve) myself\b",
        r"\buse (?:it|this|that|them|the \w+) on myself\b",
        r"\bthe world (?:would|will) be better (?:off )?without me\b",
    ),
    _rule(
        "direct_intent", "strong", "any",
        r"\bend(?:ing|ed)? it all\b",
        rf"\b(?:should|could|might|will|would|must) (?:just )?end (?:it|things|everything){_END}",
        r"\b(?:want|wanted|going|ready|plan|planning|try|trying|decided) to (?:commit )?suicide\b",
        r"\bmight as well (?:be dead|die|end it|kill myself)\b",
        rf"\b(?:planning|plan|thinking) on ending (?:it|things|everything|my life){_END}",
        r"\bsuicide(?: \w+){0,2} (?:crossing|on|in|crosses) my mind\b",
        r"\b(?:scared|afraid|worried|terrified) (?:of )?what i (?:might|will|could|am going to) do to myself\b",
        r"\bend (?:my|the) (?:suffering|pain) (?:forever|permanently|for good)\b",
        rf"\b(?:want|wanted|wanting|going|ready|plan|planning|decided|about|how|need|trying|time|try|able) to "
        rf"end (?:it|things|everything|this){_END}",
        rf"\b(?:feel|feeling|felt|thinking|thought|think) (?:like |about |of )?ending (?:it|things|everything){_END}",
        r"\b(?:commit|committing|attempt|attempting|contemplating|considering|thinking about|thinking of|think about|"
        r"think of|thought about|thoughts of|plan|planning|go through with|doing) suicide\b",
        r"\bsuicide is the (?:only|best|easiest|right) (?:option|way|answer|solution|choice|way out)\b",
        r"\b(?:feeling|feel|felt|getting|been) (?:so |really |very |kind of |pretty )?suicidal\b",
        r"\bwant (?:it all|everything|my life|life) to (?:end|be over|stop)\b",
        r"\bi should (?:just )?do it\b",
    ),
    _rule(
        "direct_intent", "strong", "first",
        r"\b(?:i|me)\b(?: (?!not\b|never\b|no\b)\w+){0,4} suicidal\b",
        r"\bsuicidal (?:thoughts|ideation|feelings|urges|again)\b",
    ),
    _rule(
        "passive_ideation", "strong", "any",
        rf"\b(?:want|wants|wanted|wanting|wish|wishing|ready|deserve|deserves|need|needs|hope|hoping|praying|rather|"
        rf"longing|going) to (?:die|be dead){_END}",
        rf"\b(?:would|had) rather (?:just )?(?:die|be dead){_END}",
        r"\brather (?:die|be dead) than (?:keep|go on|continue|live|living|wake up|face|be alive|stay alive|be here)\b",
        r"\b(?:want|wish|wishing|would like|like|prefer|need|easier|better) (?:to )?(?:just )?(?:be dead|not be alive|"
        r"stop existing|not exist|cease to exist|go to sleep forever|sleep forever|never wake up|not wake up)\b",
        r"\bwish (?:i|that i) (?:was|were|could be) dead\b",
        r"\bwish (?:i|that i) (?:had|have)? ?never (?:been born|existed|woke up)\b",
        r"\bwish (?:i|that i) (?:was|were) never born\b",
        r"\bwish (?:i|that i) could (?:just )?(?:die|fall asleep and never wake up|go to sleep and never wake up|"
        r"stop existing|not exist|end it)\b",
        r"\bbetter off dead\b",
        r"\b(?:better|easier|happier) (?:off )?(?:for everyone |for them |for my family )?if i (?:just )?"
        r"(?:was|were|died|"
        r"disappeared|was not|were not) ?(?:gone|dead|here|around|alive|born)?\b",
        r"\bif i (?:just )?(?:died|was dead|were dead|was gone|were gone|disappeared|was not (?:here|around|alive)|"
        r"were not (?:here|around|alive))(?: \w+){0,4} (?:would|will) be (?:better|easier|happier|fine|relieved)\b",
        r"\b(?:easier|better) if i (?:just )?(?:died|was dead|were dead|was gone|were gone|disappeared|was not here)\b",
        r"\b(?:easier|better)(?: \w+){0,4} to (?:just )?(?:not exist|not be alive|be dead|die|stop existing|"
        r"not wake up)\b",
        r"\b(?:deserve|deserves) to die\b",
        rf"\b(?:do not|no longer|never) want to (?:live|be alive|exist|be here|go on|keep living|keep going|"
        rf"continue|wake up|stay alive)(?: like this)?{_END}",
        r"\bnever want to wake up\b",
        r"\b(?:sleep|fall asleep) and (?:never|not) wake up\b",
        r"\bif i (?:just )?(?:never woke up|did not wake up)\b",
        rf"\bthinking(?: \w+){{0,2}} about (?:dying|death|being dead){_END}",
        rf"\b(?:hope|hoping|wish|pray|praying)(?: that)? i (?:get|got|would get|could get) (?:hit|run over|killed)"
        rf"(?: by (?:a|the) (?:car|bus|truck|train))?{_END}",
        r"\bwish (?:a|the|some) (?:car|bus|truck|train) would hit me\b",
        rf"\b(?:feel|feeling|felt) like (?:dying|i want to die){_END}",
        rf"\b(?:do not|no longer) feel like (?:living|being alive|going on){_END}",
        r"\bwish (?:i|that i) (?:was not|were not|did not) (?:alive|exist|here|born)\b",
        r"\b(?:do not|can not|no longer|never) (?:see|find) (?:the|any|a) (?:point|reason) (?:in|of|to|for) "
        r"(?:keep )?(?:living|being alive|going on|life|live|go on|staying alive|stay alive)\b",
        r"\b(?:any|a single|one) reason to (?:keep )?(?:live|living|go on|going on|be alive|stay alive)\b",
        r"\b(?:no|lost the|lost my|losing the|losing my) will to live\b",
        rf"\bbetter off gone{_END}",
        r"\bwill be dead (?:by (?!the time)|soon|tomorrow|tonight|next|this)",
        rf"\b(?:nobody|no one|noone)(?: \w+){{0,3}} (?:notice|care|miss me)(?: \w+){{0,2}} if i (?:died|was dead|"
        rf"were dead|killed myself|was gone|were gone){_END}",
        r"\bwant to stop (?:living|existing|being alive)\b",
        r"\b(?:not sure|do not know if|unsure if|unsure whether|do not think) i (?:want|can) (?:to )?(?:live|be alive|"
        r"go on|keep going|keep living|stay alive|exist)\b",
        r"\b(?:hope|hoping|pray|praying|wish|wishing)(?: that)? i (?:do not|never|will not|would not|did not) "
        r"wake up\b",
        r"\bno (?:reason|point) (?:in |for me |for me to |to )?(?:live|living|go on|going on|keep going|be alive|"
        r"being alive|stay alive|keep living|exist|existing|be here|being here)\b",
        r"\bnothing (?:left )?(?:to live for|worth living for)\b",
        r"\bwhat is the point (?:of|in) (?:living|being alive|going on|existing|life)\b",
        r"\bwhy (?:should i |do i |even |bother )?(?:keep )?(?:bother )?(?:living|being alive|go on|stay alive)\b",
        r"\blife (?:is|feels|is just) (?:not|no longer) worth (?:living|it)\b",
        rf"\b(?:tired|sick|weary) of (?:living|being alive|existing|life){_END}",
        rf"\bdone with (?:life|living|being alive){_END}",
        r"\bhate being alive\b",
        r"\b(?:should not|do not deserve to) (?:be alive|exist|live|have been born)\b",
        r"\b(?:do not|not) (?:plan|planning|intend|intending|expect|expecting) (?:on |to )?(?:be |being )?"
        r"(?:alive|around)\b",
        r"\b(?:last|final) (?:day|night) (?:alive|on earth|on this earth)\b",
        r"\bwanting to die\b",
    ),
    _rule(
        "passive_ideation", "strong", "self",
        r"\bbetter off with (?:the |my )?(?:life )?insurance(?: money)? than (?:with )?me\b",
        r"\b(?:get|gets|have|collect) (?:the |my )?(?:life )?insurance(?: money)? if i (?:was|were|am) gone\b",
        r"\b(?:better|happier|easier) (?:off )?without me\b",
    ),
    _rule(
        "self_harm", "strong", "self",
        r"\b(?:cutting|burning|hurting|harming|scratching|starving|punishing|hitting) (?:myself|my (?:arms?|wrists?|"
        r"legs?|thighs?|skin))\b",
        r"\bharm myself\b",
        r"\b(?:want|wanted|going|urge|urges|need|needed|tempted|about|planning|trying|start|started) to "
        r"(?:cut|burn|hurt|harm|scratch|hit|punch|starve|punish) (?:myself|my (?:arms?|wrists?|legs?|thighs?|skin))\b",
        r"\b(?:cut|burned|burnt|hurt|hit|punched|scratched) (?:myself|my (?:arms?|wrists?|legs?|thighs?)) "
        r"(?:again|on purpose|to (?:feel|cope|punish|calm|numb|forget|get through)|every (?:day|night|time)|"
        r"when (?:i|things|it|everything)|whenever|because i|for (?:weeks|months|years))\b",
        r"\bi (?:cut|burned|hurt myself) again\b",
        r"\b(?:cut|burned|burnt) (?:myself|my (?:arms?|wrists?|legs?|thighs?))(?: \w+){0,3} (?:last night|today|"
        r"yesterday|this morning|earlier|tonight|too deep|deep|deeper)\b",
    ),
    _rule(  # no subject in the match: "my son has been cutting" is someone else
        "self_harm", "strong", "any", rf"\b(?:been|started|keep|kept) cutting(?: again)?{_END}|\bcutting again\b"
    ),
    _rule(
        "self_harm", "strong", "first",
        r"\b(?:i|me|my)\b(?: (?!not\b|never\b|no\b)\w+){0,4} "
        r"(?:self harm|self harming|self harmed|self injury|self injuring)\b",
        r"\b(?:relapsed|relapse|relapsing) (?:on|with|into) self harm\b",
        r"\burges? to (?:self harm|cut|burn)\b",
    ),
    _rule(
        "overdose", "strong", "first",
        r"\b(?:i|me)\b(?: (?!not\b|never\b|no\b)\w+){0,4} (?:overdose|overdosing|overdosed)\b"
        r"(?! (?:on|of) \w+ (?:by accident|accidentally))",
    ),
    _rule(
        "overdose", "strong", "any",
        r"\b(?:going|want|wanted|about|planning|ready|trying|plan|decided) to overdose\b",
    ),
    _rule(
        "overdose", "strong", "any",
        rf"\b(?:took|swallowed|downed|taken|just took|am taking|taking) (?:all|all of|a bunch of|a handful of|"
        rf"a bottle of|a whole bottle of|the whole bottle of|too many|way too many|enough|every one of) "
        rf"(?:my |the |these |those )?{_PILLS}\b(?! (?:to|back|for|in|into|out|with me))",
        rf"\b(?:going to|want to|about to|planning to|will|i am going to) (?:take|swallow) (?:all|all of|a bunch of|"
        rf"a handful of|a bottle of|a whole bottle of|the whole bottle of|too many|every one of) "
        rf"(?:my |the |these |those )?{_PILLS}\b",
    ),
    _rule(
        "method_seeking", "strong", "none",
        r"\b(?:lethal|fatal|deadly) (?:dose|amount|dosage|overdose)\b",
        r"\bhow (?:many|much)\b(?: \w+){0,6} (?:to die|to kill (?:me|myself|a person|someone)|"
        r"(?:would|will|to|does it take to) (?:not|never) wake up|(?:is|be) (?:fatal|lethal|deadly)|to overdose|"
        r"stop (?:my|your|a) heart|to end (?:it|my life))\b",
        rf"\bhow (?:many|much) (?:\w+ ){{0,4}}{_DRUGS}\b(?: \w+){{0,5}} (?:kill|killed|die|dead|fatal|lethal|deadly|"
        rf"too many|too much|overdose)\b",
        rf"\bhow (?:many|much) (?:\w+ ){{0,3}}{_DRUGS} (?:it takes|does it take|would it take|would take){_END}",
        r"\b(?:drive|driving|crash|crashing|steer|steering|swerve|swerving) (?:my car |the car )?(?:into|off) "
        r"(?:a|the) (?:wall|tree|bridge|cliff|truck|river|lake|oncoming traffic)\b",
        r"\binto oncoming traffic\b",
        r"\b(?:painless|painlessly|quick|quickest|fast|fastest|easy|easiest|best|surest|simplest|peaceful|"
        r"least painful|most painless|reliable|effective|most effective|certain|guaranteed) "
        r"(?:way|ways|method|methods|means) (?:to|of) (?:die|dying|"
        r"kill (?:myself|yourself|oneself|me)|end (?:it|my life|your life|things|it all)|commit suicide|suicide|"
        r"overdose|not wake up)\b(?! with)",
        r"\b(?:ways|methods|how) (?:to|of|i could|can i|do i|do you|should i) (?:kill (?:myself|yourself|oneself)|"
        r"commit suicide|end (?:my|your) (?:own )?life|hang (?:myself|yourself))\b",
        r"\bhow (?:long|fast|quickly) (?:does it|would it|will it) take to die\b",
        r"\b(?:jumping|jump|fall|falling) (?:from|off) (?:the |a |my )?(?:\w+ ){0,2}"
        r"(?:floor|storey|story|stories|bridge|"
        r"roof|building|balcony)\b(?: \w+){0,4} (?:enough|fatal|to die|survivable|survive)\b",
        r"\b(?:tie|tying) a noose\b",
        r"\b(?:tallest|highest|which|what) (?:bridge|building|cliff|roof)s?\b(?:[ .?!,]+\w+){0,8}?[ .?!,]+"
        r"(?:quick|painless|jump|die|fall|high enough)\b",
        r"\b(?:going|want|planning|plan|about|ready) to (?:jump|throw myself) (?:off|from|in front of) "
        r"(?:a|the|my|this|that)? ?(?:\w+ )?"
        r"(?:bridge|building|roof|cliff|balcony|overpass|train|car|bus|truck|tracks)\b",
        r"\b(?:jump|step|walk|throw myself|lie down) in front of (?:a|the) (?:train|car|bus|truck|subway)\b",
    ),
    _rule(  # method questions are a crisis whoever they are for ("asking for a friend", "can you tell me")
        "method_seeking", "strong", "none",
        r"\bhow (?:deep|hard|long|far|often|much)\b(?: \w+){0,4} (?:cut|slit|burn|stab|hit|hurt|harm|scratch|starve)"
        r"(?: \w+){0,2} (?:myself|yourself|oneself|me|my (?:wrists?|arms?|legs?|skin|thighs?))\b",
        r"\bhow deep (?:\w+ ){0,3}(?:cut|slit)\b(?! (?:the|a|an|this|that|my|your|his|her|their|our) (?!wrists?\b))",
        r"\bhow (?:can|do|should|could|would) i (?:burn|cut|hurt|harm|hit|scratch|starve|injure|poison) myself\b",
        r"\b(?:ways?|methods?|tips|ideas) (?:to|of|for) (?:self harm|self injur\w*|hurt(?:ing)? (?:myself|yourself)|"
        r"cut(?:ting)? (?:myself|yourself)|burn(?:ing)? (?:myself|yourself))\b",
        r"\bhide (?:my |the |these |her |his )?(?:self harm|cuts|scars|burns|wounds)\b",
        r"\bhow long (?:can|could|would|does|do|will) (?:you|i|a person|someone|somebody|it take|one)\b(?: \w+){0,4} "
        r"without (?:eating|food|water|drinking)\b",
        r"\bwithout (?:eating|food|water|drinking) (?:until|till|before|to) (?:i|you|a person|someone|they|he|she) "
        r"(?:die|dies|am dead|is dead|starve)\b",
        r"\bhow long (?:does it take |would it take |will it take )?(?:to|until|till|before) (?:i |you |someone |a person )?"
        r"(?:starve|bleed out|die from|die of|die without|die)\b(?! ?(?:of )?old age\b)",
        r"\bif i (?:drink|swallow|eat|inhale|take|mix) (?:\w+ ){1,4}(?:will|would|could|can) (?:i|it) (?:die|kill me)\b",
        r"\b(?:what|which) (?:dose|amount|combination|mix|mixture)\b(?: \w+){0,5} (?:kill|killed|lethal|fatal|deadly)\b",
        r"\b(?:carbon monoxide|exhaust fumes|helium|charcoal|hanging|a noose)\b(?: \w+){0,6} "
        r"(?:kill (?:myself|yourself|me)|suicide|painful|take to die)\b",
    ),
    _rule(  # the methods asked for outright, and a method's details asked for a story or someone else
        "method_seeking", "strong", "none",
        r"\b(?:rank|list|name|tell me|give me|show me|what|whats|which|explain|compare)\b(?: \w+){0,4} "
        r"(?:suicide|self harm) (?:methods?|techniques?|options)\b",
        r"\b(?:painless|painlessly|quick|quickest|fast|fastest|easy|easiest|best|surest|reliable|most reliable|"
        r"effective|most effective|certain) (?:way|ways|method|methods) (?:for|of) (?:suicide|self harm)\b",
        r"\b(?:kill(?:s|ed|ing)? (?:herself|himself|themselves|themself)|commits? suicide|hangs? (?:herself|himself|themselves)|"
        r"overdoses? on)\b[^.?!]{0,100}[.?!]?[^.?!]{0,60}\b(?:what exactly (?:would|does|do|did|should|could) "
        r"(?:she|he|they|it|someone|a person|the character|my character) (?:need|have to|take|use|do)|"
        r"exactly how (?:much|many|to|long|would|does|do)|how exactly (?:would|does|do|could|should|to)|"
        r"be specific|step by step|what would (?:she|he|they) need|how much would|how many would|what dose)\b",
    ),
    _rule(  # how people do it, in chat shorthand too
        "method_seeking", "strong", "none",
        r"\bhow (?:do|did|does|would|can|could) (?:people|ppl|someone|somebody|you|u|one|i) (?:hang|kill|shoot|drown|poison|"
        r"starve|overdose) (?:themselves|themself|yourself|urself|oneself|myself|himself|herself)\b",
        r"\b(?:best|easiest|quickest|fastest|strongest|which|what) (?:\w+ ){0,3}(?:to|for) (?:overdose|od)(?: on)?\b",
        r"\b(?:go to |)sleep (?:and|n) (?:not|never) wake up\b",
        r"\bthinking (?:of|about) (?:jumping|stepping|throwing myself) (?:off|from|in front of)\b",
        r"\b(?:step|stepping|jump|jumping|walk|walking|throw myself|lie down|lying down) in front of (?:a|the|one|an) "
        r"?(?:train|car|bus|truck|subway|one)?\b",
    ),
    _rule(  # other languages (accents are folded away by `normalise`): first-person forms only
        "direct_intent", "strong", "none",
        r"\b(?:quiero|deseo) (?:morir|morirme|suicidarme|matarme)\b|\bno quiero (?:vivir|seguir viviendo)\b",
        r"\bje (?:veux|voudrais) (?:mourir|me suicider|me tuer|en finir)\b|\bje (?:ne )?veux plus vivre\b|"
        r"\bje pense (?:au suicide|a me suicider|a me tuer|a mourir)\b",
        r"\b(?:ich )?will nicht mehr leben\b|\bich will sterben\b|\bmich (?:umbringen|toten|umzubringen)\b",
        r"\bquero (?:morrer|me matar|suicidar)\b|\bnao quero (?:mais )?viver\b",
        r"\bvoglio (?:morire|uccidermi|suicidarmi|farla finita)\b|\bnon voglio piu vivere\b",
        r"\bik wil (?:dood|niet meer leven|zelfmoord plegen|sterven)\b",
    ),
    _rule(
        "plan", "strong", "any",
        r"\b(?:have|got|made|make|making) a (?:plan|date) (?:to|for) (?:kill|end|die|do it|take my|suicide|overdose)\b",
        rf"\b(?:saving|saved|stockpiling|stockpiled|hoarding|hoarded|collecting|collected) (?:up )?"
        rf"(?:my |some |enough )?{_PILLS}\b",
        r"\b(?:sit|sitting|sat|holding|held) (?:here )?with (?:a|the|my) (?:knife|blade|razor|gun|pills|rope)\b",
        r"\b(?:hold|holding|held|lined up|lining up) (?:the|my|all|all my|all the) "
        r"(?:pills|blades?|razors?|rope|gun)\b",
        r"\bgo (?:in)?to the (?:woods|forest|ocean|sea|river|lake|mountains|tracks) and (?:not|never) come back\b",
        r"\b(?:have|got) (?:the|my|all the|enough) (?:pills|rope|gun|blades?) (?:ready|here|with me|in front of me)\b",
        r"\b(?:bought|buying|got|getting|have) (?:a |some )?(?:rope|gun|pistol|firearm|razor blades?|blades?)"
        r"(?: \w+){0,5} (?:to use on myself|to kill|to end|to do it|on myself|planning to use it)\b",
    ),
    _rule(  # not a card for someone who leaves: "a farewell message for my retiring colleague"
        "farewell_note", "strong", "any",
        r"\bsuicide (?:note|letter|message)s?\b",
        r"\b(?:goodbye|farewell) (?:note|letter|message)s?\b(?! (?:for|to) (?:my |our |a |the |his |her |their )?"
        r"(?:\w+ ){0,2}(?:colleague|coworker|co worker|boss|manager|team|teacher|student|class|neighbou?r|friend|"
        r"client|customer|staff|employee|intern|mentor|tenant)s?\b)",
    ),
    _rule(
        "farewell_note", "strong", "none",
        r"\bby the time (?:you|anyone|someone|somebody|they) (?:read|reads|see|sees|find|finds) this\b",
        r"\bgoodbye (?:forever|world|cruel world)\b",
        r"\b(?:picturing|writing|wrote|written) the note i will leave\b",
    ),
    _rule(
        "attempt", "strong", "any",
        r"\b(?:tried|attempted|try|attempt) (?:to kill myself|suicide|to end my life|to take my (?:own )?life)\b",
        r"\btrying again\b(?= .*\b(?:suicide|kill myself|end it)\b)",
    ),
    # -- indirect: weight 1 each, per category; two categories make a crisis
    _rule(
        "possessions", "indirect", "self",
        r"\bgiv(?:e|es|ing|en) (?:away )?(?:all |most |some )?(?:of )?my (?:stuff|things|belongings|possessions|"
        r"\w+ collection|clothes|books|games|pets?|dog|cat|guitar|records|jewelry|jewellery)(?: away)?\b",
        r"\b(?:giving|gave|given|give) away (?:all |most |some )?(?:of )?my\b",
        r"\b(?:giv(?:e|es|ing|en)|gave) (?:all |most )?(?:of )?my (?:stuff|things|belongings|possessions) to\b",
        r"\b(?:found|finding) (?:a )?new homes? for my (?:cat|dog|pets?|animals)\b",
        r"\b(?:made|making|make) sure (?:my )?(?:cat|dog|pets?|kids|children|family)(?: \w+){0,2} "
        r"(?:will be|are|is|gets?)"
        r" (?:looked after|taken care of|ok|okay|fine|cared for)\b",
    ),
    _rule(
        "finality", "indirect", "any",
        r"\bwill not be (?:around|here|alive|a problem|a burden|bothering (?:you|anyone)|in (?:your|anyones|the) way)"
        r"(?: for)? (?:much|any|very|for) ?(?:longer|more|long)\b",
        r"\bwill not be (?:around|here|alive) (?:any more|tomorrow|next (?:week|month|year)|by then)\b",
        r"\bwill not (?:have to|need to) (?:worry|deal|put up) (?:about|with) me\b",
        r"\b(?:it|this|everything|all of this|the pain|none of this|nothing) will (?:all )?"
        r"(?:be over|matter|not matter)"
        r" (?:soon|tonight|tomorrow|after tonight|any more)\b",
        r"\bafter (?:tonight|today|this week),? (?:none of this|nothing|it) will (?:not )?matter\b",
        r"\bnot be a (?:problem|burden) (?:for (?:\w+ )?)?(?:much longer|any more|soon|for long)\b",
        r"\bnot coming (?:back|down|home)\b",
        r"\b(?:do not think|not sure) i am (?:coming|going) (?:back|down|home)\b",
        r"\bwill not be here for (?:their|his|her|my|the) \w+\b",
        r"\b(?:when|after|once) i am gone\b",
        r"\bmy life is over\b",
        r"\bif (?:anything|something) happens to me\b",
        r"\bwill not be alive\b",
        r"\bnot (?:going to|gonna) be (?:here|around|alive) (?:tomorrow|much longer|for long|any more)\b",
        r"\b(?:will not|not going to|not) stick around (?:much|any|for) ?(?:longer|more|long)\b",
        r"\b(?:do not|can not) see myself (?:making it|being (?:here|around|alive)) (?:to|past|through|until) "
        r"(?:christmas|tomorrow|the weekend|next (?:week|month|year)|my birthday|the end of)\b",
        r"\b(?:today|tonight) is (?:my last|the) (?:day|night)\b",
        r"\bdisappear and never come back\b",
    ),
    _rule(
        "farewell", "indirect", "any",
        r"\b(?:this|it) is (?:my )?goodbye\b",
        r"\b(?:wrote|written|writing|finished) (?:the|my) (?:letters|notes)\b",
        r"\ba (?:letter|note) for (?:my )?(?:family|mom|mum|dad|parents|kids|children|wife|husband|partner)\b(?! s)",
        r"\bgoodbye (?:everyone|everybody|all|guys|friends)\b",
        r"\b(?:say|saying|said|wanted to say|want to say|needed to say)(?: \w+){0,4} goodbyes?\b",
        r"\b(?:my|this is my) (?:last|final) (?:goodbye|message|words)\b",
        r"\byou will not (?:hear from|see) me (?:again|any more|ever again)\b",
        r"\b(?:wrote|writing|write|written|left|leaving|started writing)(?: a| my| some)? (?:letters?|notes?) "
        r"(?:to|for) (?:my )?(?:family|mom|mum|dad|parents|kids|children|wife|husband|partner|friends|everyone|"
        r"loved ones|sister|brother|son|daughter)\b",
        r"\b(?:please )?tell (?:my )?\w+ (?:that )?i (?:love|loved|am sorry)\b",
        r"\bthank you for everything,? (?:and )?goodbye\b",
    ),
    _rule(
        "apology", "indirect", "any", r"\bi am sorry for everything\b", r"\bsorry i could not be (?:better|enough)\b"
    ),
    _rule(
        "burden", "indirect", "self",
        r"\b(?:i am|i feel like|feel like i am|i have become|i am just|i am only|i am such|i am nothing but|i feel)"
        r" (?:a |such a |nothing but a |only a |a huge |a big |just a )?burden\b",
        r"\bburden (?:on|to) (?:everyone|everybody|my family|them|my kids|my parents|the people)\b",
        r"\b(?:i am|i feel like)(?: \w+)? (?:a )?waste of (?:space|oxygen|air|life)\b",
        r"\bdeserves? (?:so much )?better than me\b",
        r"\b(?:kids|children|family|wife|husband|son|daughter) would be better off (?:raised by|with) (?!me\b)",
    ),
    _rule(
        "no_way_out", "indirect", "any",
        r"\bno way out\b",
        r"\b(?:do not|can not) see (?:a|any) (?:way out|future|point|reason to)\b",
        rf"\bcan not (?:go on|keep going|do this any more|take (?:it|this) any more|take any more|"
        rf"handle (?:it|this|life) any more|cope any more){_END}",
        r"\b(?:there is|i see|i have) no (?:future|hope)(?: for me| left)?\b",
        r"\bnothing (?:will|is going to) (?:ever )?(?:get|be|change) (?:better|different)\b",
        r"\bnothing ever gets better\b",
        r"\b(?:given|giving|give) up on (?:life|everything|living|myself)\b",
        r"\b(?:life|everything|my life|it all) (?:is|feels|seems) (?:so )?(?:pointless|meaningless|hopeless)\b",
        r"\b(?:life|my life) has no (?:meaning|point|purpose)\b",
        rf"\b(?:so )?done with everything{_END}",
        r"\bno point (?:in |to )?(?:anything|trying|it all)\b",
        r"\bhad enough of (?:life|everything|living)\b",
        r"\b(?:done|tired of|sick of) fighting\b|\bcan not fight (?:this|it) any more\b",
        r"\bwant (?:it|this|the pain) to (?:end|stop|be over)\b",
        r"\bwhat is the point (?:any more|of anything)\b",
    ),
    _rule(
        "nobody_cares", "indirect", "any",
        r"\b(?:nobody|no one|noone)(?: \w+){0,3} (?:notice|care|miss me|remember me)(?: \w+){0,3} if i (?:was|were|"
        r"died|disappeared|left|vanished|did it|was gone|were gone|live or die)\b",
        r"\b(?:nobody|no one|noone) (?:would|will)(?: even)? miss me\b",
        r"\b(?:nobody|no one|noone) cares (?:if|whether) i (?:live|die|am alive)\b",
    ),
    _rule("fearless", "indirect", "first", r"\b(?:i am|i have) not (?:afraid|scared) (?:of dying|to die|of death)\b"),
    _rule("without_me", "indirect", "self", r"\b(?:would|will) be (?:just )?(?:fine|ok|okay|alright) without me\b"),
    _rule("disappear", "indirect", "any", r"\bwant to (?:just )?(?:disappear|vanish|fade away)(?: forever)?\b"),
    _rule(
        "decided", "indirect", "first",
        rf"\bi have (?:already |finally )?(?:decided|made (?:up )?my (?:mind|decision)){_END}",
        rf"\bi am ready(?: for it| to go)?{_END}",
        r"\b(?:made|making) (?:my )?(?:peace|final arrangements)\b",
        r"\btonight is the night\b",
        rf"\bi am (?:so )?done{_END}",
        r"\bactually planning it\b",
    ),
    _rule("escape", "indirect", "first", rf"\bi (?:just )?want out{_END}", rf"\bi can not live like this{_END}"),
    _rule("plan", "indirect", "first", rf"\bi have a plan{_END}"),
    _rule(
        "plan", "indirect", "any",
        r"\b(?:going to|will) do it (?:tonight|today|tomorrow|this weekend|soon)\b",
        r"\bhow i (?:would|will|am going to|could) do it\b",
    ),
    _rule(
        "means", "indirect", "any",
        r"\b(?:have|got|bought|keep) (?:a|the|my) (?:rope|noose|gun|pistol)\b(?! (?:safe|licen[cs]e|permit|insurance))",
        weight=1.5,
    ),
    _rule("fixation", "indirect", "any", r"\bkeep (?:looking|staring) at (?:it|them)\b"),
    _rule("date_set", "indirect", "none", rf"\b(?:picked|chosen|set) (?:a|the) date{_END}"),
    _rule(
        "at_the_edge", "indirect", "any",
        r"\b(?:sitting|sat|standing|stood|sit|stand) (?:on|at) (?:the |a )?(?:edge(?! of)|ledge|roof|rooftop|bridge|"
        r"railing|tracks)\b",
        weight=1.5,
    ),
    _rule(
        "possible_self_harm", "indirect", "self",
        r"\b(?:cut|burned|burnt|hurt) (?:myself|my (?:arms?|wrists?|legs?|thighs?))\b",
        weight=1.5,
    ),
    # -- low mood: a concern; counts half towards a crisis, however much of it
    _rule(
        "low_mood", "mood", "none",
        r"\b(?:hopeless|hopelessness|worthless|depressed|depression|lonely|loneliness|miserable|numb|empty inside|"
        r"despair|heartbroken|grieving|ashamed|trapped)\b",
        r"\b(?:so|really|very|feel|feeling) (?:sad|down|low|alone|empty|broken)\b",
        r"\b(?:hate|hating) (?:myself|my life)\b",
        r"\bcan not cope\b|\bfalling apart\b|\brock bottom\b|\bbreaking point\b|\b(?:dying|dead) inside\b",
        r"\bcry(?:ing)? (?:myself to sleep|every (?:day|night))\b|\bcan not stop crying\b",
    ),
    # -- the topic, or someone else: a concern, never a crisis
    _rule("negated", "topic", "none", r"\b(?:not|never|no longer) (?:\w+ )?suicidal\b"),
    _rule(
        "topic", "topic", "none",
        r"\bsuicid\w*|\bself harm\w*|\boverdos\w*",
        r"\bkill(?:s|ed|ing)? (?:himself|herself|themselves|themself|yourself|oneself)\b",
        r"\b(?:took|take|taking|end|ended|ending) (?:his|her|their) (?:own )?life\b",
        r"\b(?:wants|want|wanted) to die\b",
        r"\b(?:cutting|hurting|harming) (?:himself|herself|themselves)\b",
        r"\bbetter off without (?:him|her|them)\b",
    ),
)


# --- detection -----------------------------------------------------------------------


@dataclass(frozen=True)
class CrisisSignal:
    """What `detect` found. `reasons` are short machine-readable labels, never the user's words."""

    level: Level
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class _Findings:
    strong: tuple[str, ...]  # reasons of strong signs that stand
    weights: tuple[tuple[str, float], ...]  # indirect categories that stand, with weights
    mood: bool
    concerns: tuple[str, ...]  # why a concern (downgraded signs, topic, low mood)

    @property
    def score(self) -> float:
        return sum(weight for _, weight in self.weights) + (0.5 if self.mood else 0.0)


def _downgrade(text: str, start: int, end: int, subject: Subject, reason: str = "") -> str | None:
    """Why a match does not describe the writer now (negated, reported, someone else, long ago), or None.
    A method question is only downgraded when negated: "can you tell me how many pills..." asks it."""
    sentence_start, sentence = _sentence(text, start, end)
    clause = _CLAUSE_BREAK.split(text[sentence_start:start])[-1]
    if _NEGATED.search(clause):
        return "negated"
    if reason == "method_seeking":
        return None
    if _REPORTED.search(clause) and not _INNER_VOICE.search(clause):
        return "reported"
    if subject in ("any", "first"):
        who = _WHO.search(text[sentence_start:start])
        if who and _people(who.group(1)) and who.group(1) not in _FIRST:
            return "third_party"  # "my friend who attempted suicide": the friend did
        people = _people(text[sentence_start:end])
        if people and people[-1] not in _FIRST:
            return "third_party"
        if not people and _FICTION.search(sentence):
            return "fiction"
        if not people and subject == "first":
            return "topic"
    if _LONG_AGO.search(sentence) and not _STILL_NOW.search(sentence):
        return "past"
    return None


@lru_cache(maxsize=4096)
def _analyse(text: str) -> _Findings:
    """Every rule over one message; cached, since history turns come back on every message."""
    norm = _IDIOMS.sub(" ~ ", normalise(text))
    strong: list[str] = []
    weights: dict[str, float] = {}
    concerns: list[str] = []
    mood = False
    for rule in RULES:
        for match in rule.pattern.finditer(norm):
            if rule.kind == "mood":
                mood = True
                break
            if rule.kind == "topic":
                begin, _ = _sentence(norm, match.start(), match.end())
                people = _people(norm[begin : match.end()])
                about_others = rule.reason == "topic" and people and people[-1] not in _FIRST
                concerns.append("third_party" if about_others else rule.reason)
                break
            why = _downgrade(norm, match.start(), match.end(), rule.subject, rule.reason)
            if why is not None:
                concerns.append(why)
                continue
            if rule.kind == "strong":
                strong.append(rule.reason)
            else:
                weights[rule.reason] = max(weights.get(rule.reason, 0.0), rule.weight)
            break
    if mood:
        concerns.append("low_mood")
    return _Findings(tuple(strong), tuple(weights.items()), mood, tuple(concerns))


DOWNGRADES = frozenset({"negated", "reported", "third_party", "fiction", "past", "topic"})


def has_indirect_sign(text: str) -> bool:
    """Whether an indirect sign stands in the message (giving things away, a burden, no way out...)."""
    return bool(_analyse(text).weights)


def has_idiom(text: str) -> bool:
    """Whether the message holds one of the idioms the rules blank ("this job is killing me")."""
    return bool(_IDIOMS.search(normalise(text)))


def _unique(items: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def detect(text: str, history: Sequence[str] = ()) -> CrisisSignal:
    """The crisis level of `text`, given the earlier user turns of the conversation (oldest first)."""
    now = _analyse(text)
    if now.strong:
        return CrisisSignal("crisis", _unique(now.strong))
    if now.score >= CRISIS_SCORE:
        return CrisisSignal("crisis", _unique([reason for reason, _ in now.weights]))
    earlier = [_analyse(turn) for turn in history[-HISTORY_TURNS:]]
    if now.weights:
        # indirect signs build up over a conversation: each category counts once
        combined = dict(now.weights)
        for past in earlier:
            for reason in past.strong:
                combined[reason] = 2.0
            for reason, weight in past.weights:
                combined[reason] = max(combined.get(reason, 0.0), weight)
        mood = now.mood or any(past.mood for past in earlier)
        if sum(combined.values()) + (0.5 if mood else 0.0) >= CRISIS_SCORE:
            return CrisisSignal("crisis", _unique([*combined, "history"]))
    reasons = [reason for reason, _ in now.weights] + list(now.concerns)
    if any(past.strong or past.weights for past in earlier):
        reasons.append("history")
    return CrisisSignal("concern", _unique(reasons)) if reasons else CrisisSignal("none", ())


# --- what the bot says ---------------------------------------------------------------

@cache
def _builtin_resources() -> Resources:
    return load_resources(None)


def _resources(resources: Resources | None) -> Resources:
    return resources if resources is not None else _builtin_resources()


def protocol_message(locale: str = "default", resources: Resources | None = None) -> str:
    """The crisis answer: warm, short, resources for `locale`, and nothing about means or methods."""
    lines = "\n".join(f"• {resource.line()}" for resource in _resources(resources).for_locale(locale))
    return (
        "I'm really sorry you're going through this, and I'm glad you told me. You're not alone, "
        "and you deserve support right now.\n\n"
        "If you are in danger or might act on these thoughts, please call your local emergency number right away. "
        "You can also talk to someone now:\n"
        f"{lines}\n\n"
        "If you can, reach out to someone you trust too: a friend, a family member or a doctor. "
        "I'm an automated assistant, not a counsellor, but I'm still here if you want to keep talking."
    )


CONCERN_INSTRUCTION = (
    "Care note: the user may be going through something hard, or worried about someone who is. Answer their "
    "question, and check in gently and briefly: acknowledge how they feel, ask how they are doing, and mention "
    "that support lines are open at any hour (the app adds their details under your answer). Do not diagnose, "
    "do not lecture, and never describe means or methods of self-harm."
)


def care_note(locale: str = "default", resources: Resources | None = None) -> str:
    """A gentle line for a "concern" answer (someone else at risk, the topic, low mood): where help is."""
    found = _resources(resources).for_locale(locale)
    listed = "; ".join(f"{r.name}: {r.contact}" for r in found)
    return (
        "If you or someone you know is struggling or might be in danger, support is there at any hour "
        f"({listed}). In an emergency, call your local emergency number."
    )
