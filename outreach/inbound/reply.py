"""A person's reply: the words they newly wrote, and what those words want.

New text
    The body is read line by line. Everything from the first *history marker* on is
    quoted history and is dropped:

    - an Outlook separator ("-----Original Message-----" and its translations) or a
      forward marker ("---------- Forwarded message ---------", "Begin forwarded
      message:"...); for a forward, the person's note above the marker is kept;
    - an Outlook header block: a "From:/Von:/De :/De:/Från:" line followed within a few
      lines by at least one more of "Sent:/To:/Subject:..." in the same languages (a
      "____" rule just above it goes too);
    - an attribution line ("On ... wrote:", "Am ... schrieb ...:", "Le ... a écrit :",
      "El ... escribió:", "Den ... skrev ...:", Apple's and Thunderbird's variants),
      possibly wrapped over up to three lines, when what follows it is NOT ">"-quoted
      (HTML mail converted to text loses its ">" marks, so the history follows bare).

    When an attribution is followed by ">" lines, only the attribution and the quoted
    lines go: lines the person wrote between or after quoted lines (an inline answer)
    are kept. Then the signature goes: from a "-- " line, from a mobile footer ("Sent
    from my iPhone", "Skickat från min iPhone", "Get Outlook for iOS"...), from a
    sign-off line ("Best,", "Mit freundlichen Grüßen", "Cordialement", "Saludos",
    "Mvh"...) followed by at most six short lines, or a trailing block of name, title and
    phone/email/web lines. A sign-off is removed with the block after it, and only when
    some text stays above it: "Thanks!" alone is a message, not a signature.

Intent
    Read from the new text only, never from the quoted history (our own footer says
    "Unsubscribe: https://.../u/TOKEN"; a reply quoting it is not an unsubscribe). Lines
    that look like such a footer (an unsubscribe link, "reply 'unsubscribe' to stop") are
    ignored even when a client failed to quote them. Precedence, strongest first:

    1. unsubscribe: an explicit request to stop mail ("remove me", "unsubscribe",
       "abmelden", "désinscrire", "darse de baja", "sluta maila mig", or a message that
       is just "stop"); it must be honoured whatever else the text says;
    2. referral: the person points at someone else ("talk to Jane", "I'm not the right
       person", "I've cc'd my colleague"); this beats not-interested, so "not interested
       myself, but talk to Jane" is a referral: the lead lives on through Jane;
    3. not_interested ("no thanks", "we already use X", "kein Interesse"...);
    4. interested ("let's talk", "send me times", "how about Tuesday at 2pm", "gerne"...);
       a positive phrase with a negation just before it in the same clause ("not
       interested", "no me interesa") does not count as interest;
    5. neutral: anything else (questions, thanks, chatter).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from outreach.inbound.types import Intent, Reply

MAX_INTENT_CHARS = 4000  # how much of the new text is read for its intent

# --- quoted history -------------------------------------------------------------------

_QUOTED_RE = re.compile(r"^\s*>")
_ATTRIBUTION_END_RE = re.compile(
    r"\b(?:wrote|schrieb|skrev|escribi[óo]|a\s+[ée]crit|ha\s+scritto|schreef)\b[^\n]{0,160}?:\s*$",
    re.I,
)
_ATTRIBUTION_START_RE = re.compile(r"^\s*(?:(?:on|am|le|el|den)\b|\d{1,4}[\s./-])", re.I)
_SEPARATOR_RE = re.compile(
    r"^\s*[-_=*]{2,}\s*(?:original\s+message|ursprüngliche\s+nachricht|originalnachricht|"
    r"message\s+d'origine|message\s+original|mensaje\s+original|originalmeddelande|"
    r"ursprungligt\s+meddelande|forwarded\s+message|weitergeleitete\s+nachricht|"
    r"message\s+transf[ée]r[ée]|mensaje\s+reenviado|vidarebefordrat\s+meddelande)"
    r"\s*[-_=*]{2,}\s*$",
    re.I,
)
_FORWARD_INTRO_RE = re.compile(
    r"^\s*(?:begin\s+forwarded\s+message|anfang\s+der\s+weitergeleiteten\s+nachricht|"
    r"d[ée]but\s+du\s+message\s+(?:r[ée]exp[ée]di[ée]|transf[ée]r[ée])|"
    r"inicio\s+del\s+mensaje\s+reenviado|b[öo]rjan\s+p[åa]\s+vidarebefordrat\s+meddelande|"
    r"vidarebefordrat\s+brev)\s*:?\s*$",
    re.I,
)
_RULE_RE = re.compile(r"^\s*(?:_{8,}|-{8,})\s*$")
_FROM_LINE_RE = re.compile(r"^\s*\*?(?:from|von|de|från|fra|van)\s*\*?\s*:\s*\S", re.I)
_HEADER_LINE_RE = re.compile(
    r"^\s*\*?(?:sent|date|to|cc|subject|gesendet|datum|an|kopie|betreff|envoy[ée]|[àa]|"
    r"objet|enviado(?:\s+el)?|fecha|para|asunto|skickat|till|kopia|ämne)\s*\*?\s*:",
    re.I,
)

# --- signatures ---------------------------------------------------------------------------

_SIG_DASHES_RE = re.compile(r"^(?:--|\u2014|-- )\s*$")
_MOBILE_RE = re.compile(
    r"^\s*(?:sent\s+(?:from|via|with)\s+(?:my|mail\s+for|outlook|yahoo|gmail|samsung|proton)|"
    r"get\s+outlook\s+for|skickat\s+från|skickades\s+från|hämta\s+outlook\s+för|"
    r"von\s+meinem|gesendet\s+(?:von|mit|über)\s+|outlook\s+für\s+\w+\s+beziehen|"
    r"envoy[ée]\s+(?:de|depuis)\s+mon|obtenir\s+outlook\s+pour|t[ée]l[ée]charger\s+outlook|"
    r"enviado\s+desde\s+mi|obtener\s+outlook\s+para|descargar\s+outlook)\b[^\n]{0,60}$",
    re.I,
)
_SIGNOFF_WORDS = (
    r"best(?:\s+regards|\s+wishes)?|kind(?:est)?\s+regards|warm(?:est)?\s+regards|regards|"
    r"many\s+thanks|thanks(?:\s+(?:again|so\s+much|a\s+lot|in\s+advance))?|thank\s+you|thx|"
    r"cheers|all\s+the\s+best|sincerely|yours(?:\s+(?:truly|sincerely))?|talk\s+soon|"
    r"mit\s+freundlichen\s+gr(?:ü|ue)(?:ß|ss)en|freundliche\s+gr(?:ü|ue)(?:ß|ss)e|"
    r"(?:viele|beste|liebe|sch(?:ö|oe)ne|herzliche)\s+gr(?:ü|ue)(?:ß|ss)e|gr(?:ü|ue)(?:ß|ss)e|"
    r"gru(?:ß|ss)|lg|vg|mfg|danke|vielen\s+dank|"
    r"cordialement|bien\s+cordialement|bien\s+[àa]\s+vous|(?:meilleures\s+)?salutations|"
    r"merci(?:\s+beaucoup)?|bonne\s+journ[ée]e|amicalement|"
    r"saludos(?:\s+cordiales)?|un\s+saludo|atentamente|(?:muchas\s+)?gracias|un\s+abrazo|"
    r"med\s+v[äa]nliga\s+h[äa]lsningar|v[äa]nliga\s+h[äa]lsningar|h[äa]lsningar|mvh|vh|"
    r"tack(?:\s+p[åa]\s+f[öo]rhand)?|ha\s+det\s+bra"
)
_NAME = r"[A-ZÀ-ÖØ-Þ][\w.'\u2019-]*(?:\s+[A-ZÀ-ÖØ-Þ][\w.'\u2019-]*){0,2}"
_SIGNOFF_RE = re.compile(
    rf"^\s*(?:(?i:{_SIGNOFF_WORDS})[\s,.!:;\u2013-]*(?:{_NAME})?|/\s*{_NAME})\s*$"
)
_CONTACT_RE = re.compile(
    r"(?:\+?\d[\d\s().-]{6,}\d|[\w.+-]+@[\w-]+\.[\w.-]+|https?://|www\.|\b[\w-]+\.(?:com|org|net|"
    r"io|de|fr|es|se)\b)",
    re.I,
)
# capitalised words that are not a person's name (after "talk to", or as a signature)
_NOT_A_NAME = (
    r"(?!(?:You|Your|Us|Me|Them|The|This|That|It|Sales|Support|Tomorrow|Next|Today|"
    r"(?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day|January|February|March|April|May|June|July|"
    r"August|September|October|November|December)\b)"
)
_NAME_LINE_RE = re.compile(rf"^\s*{_NOT_A_NAME}{_NAME}\s*$")
_NOT_A_SIGNATURE_RE = re.compile(
    r"^(?:yes|no|ok|okay|sure|thanks|ja|nein|oui|non|s[íi]|nej|tack|stop|stopp)\W*$", re.I
)
_MAX_SIG_LINES = 6

# --- intent -----------------------------------------------------------------------------

_FOOTER_LINE_RE = re.compile(
    r"https?://\S*/u/\S+|unsubscribe\s*:\s*(?:https?://|<)|"
    r"(?:reply|respond|answer|antworten?|r[ée]pond\w*|responde\w*|svara)\b[^\n]{0,40}"
    r"[\"'\u201c\u201d\u2018\u2019«»](?:unsubscribe|stop|stopp|abmelden|"
    r"remove)[\"'\u201c\u201d\u2018\u2019«»]",
    re.I,
)

# Every phrase below starts a word: the "(?<!\w)(?=\w)" guard in front lets the scan skip
# positions inside words before trying the long list of alternatives.
_FOOTER_HINT_RE = re.compile(r"/u/|unsubscri|stop|abmelden|remove", re.I)
_UNSUBSCRIBE_RE = re.compile(
    r"(?<!\w)(?=\w)(?:\bunsubscrib\w*|\bremove\s+(?:me|my\s+(?:e-?mail|address|name|contact))|"
    r"\btake\s+me\s+off|\bopt(?:-|\s)?(?:me\s+)?out\b|"
    r"\bstop\s+(?:e-?mailing|mailing|sending|contacting|writing\s+to|spamming|messaging)\b|"
    r"\b(?:do\s+not|don'?t|never)\s+(?:e-?mail|contact|write\s+to|message|mail)\s+(?:me|us)\b|"
    r"\bno\s+more\s+e-?mails\b|\boff\s+your\s+(?:mailing\s+)?list|"
    r"\babmelden\b|\babbestellen\b|\baustragen\b|\bentfernen\s+sie\s+mich|"
    r"\bl(?:ö|oe)schen\s+sie\s+mich|\bkeine\s+(?:weiteren\s+)?(?:e-?mails|nachrichten|mails)\b|"
    r"\bnicht\s+mehr\s+(?:kontaktieren|anschreiben|schreiben|zu\s+kontaktieren)|"
    r"\baus\s+(?:ihrem|dem|ihrer|der)\s+verteiler|"
    r"\bd[ée]sinscri\w*|\bd[ée]sabonn\w*|\bretirez[- ]moi|\bsupprimez[- ]moi|"
    r"\bne\s+(?:plus\s+me|me\s+plus)\s+(?:contacter|[ée]crire|envoyer)|"
    r"\barr[êe]tez\s+de\s+m['\u2019](?:[ée]crire|envoyer|contacter)|"
    r"\bdar(?:me|se|nos)?\s+de\s+baja|\bd[ée]nme\s+de\s+baja|\bb[óo]rr(?:enme|arme|adme)\b|"
    r"\belim[íi]n(?:enme|ame|arme)\b|\bno\s+me\s+(?:escriban|escribas|contacten|contactes|"
    r"env[íi]en|env[íi]es)\s+m[áa]s|\bdejen?\s+de\s+(?:escribirme|enviarme|contactarme)|"
    r"\b(?:quitarme|s[áa]quenme|s[áa]carme)\s+de|"
    r"\bavregistrera\w*|\bavprenumerera\w*|\bavsluta\s+prenumeration|\bta\s+bort\s+mig|"
    r"\bsluta\s+(?:maila|mejla|skicka|kontakta|skriva\s+till|höra\s+av\s+er\s+till)\s*(?:mig)?|"
    r"\binga\s+fler\s+(?:mejl|mail|e-?post|utskick)|\bkontakta\s+mig\s+inte|"
    r"\bstopp?en\s+sie\b[^.\n]{0,20}\b(?:e-?mails|mails|nachrichten)|"
    r"\bkeine\s+(?:e-?mails|mails|nachrichten)\s+mehr)",
    re.I,
)
_STOP_ONLY_RE = re.compile(
    r"^\W*(?:stop|stopp|halt|unsubscribe|remove|remove\s+me|arr[êe]t|baja|avregistrera)\W*$",
    re.I,
)
_REFERRAL_RE = re.compile(
    r"(?<!\w)(?=\w)(?:(?i:\b(?:talk|speak|reach\s+out|get\s+in\s+touch|chat|connect|"
    r"touch\s+base)\s+(?:to|with)\s+)"
    rf"(?:(?i:my|our)\s+)?(?:{_NOT_A_NAME}[A-ZÀ-Þ]\w+|"
    r"[\w.+-]+@[\w-]+\.[\w.]+|(?i:colleague|coworker|co-worker|manager|boss|head\s+of|cto|ceo|cfo|"
    r"coo|cmo|cio|cro|vp|director|team\s+lead|partner|founder|assistant|procurement|purchasing))|"
    r"(?i:\b(?:please\s+)?(?:contact|email|e-mail|ping|write\s+to|reach)\s+)"
    r"(?:(?i:my|our)\s+(?i:colleague|coworker|manager|boss|cto|ceo|cfo|head|director|team)|"
    rf"{_NOT_A_NAME}[A-ZÀ-Þ][a-zà-ÿ]+\b|[\w.+-]+@[\w-]+\.[\w.]+)|"
    r"(?i:\b(?:i'?m|i\s+am)\s+not\s+the\s+(?:right|best|correct|appropriate|relevant)\s+"
    r"(?:person|contact|one|guy|woman|man)|\bnot\s+the\s+(?:right|best)\s+(?:person|contact)|"
    r"\b(?:i'?ve|i\s+have|i'?m|i\s+am)\s+(?:cc'?d|cc'?ing|cced|copied|copying|looped\s+in|"
    r"looping\s+in|added|adding|forwarded|forwarding)\b|"
    r"\b(?:cc'?d|cced|copied|looping|looped)\s+(?:in\s+)?(?:my|our|here)\b|"
    r"\b(?:is|are|would\s+be)\s+(?:the\s+)?(?:right|best|better)\s+(?:person|contact|people)|"
    r"\b(?:better|right)\s+person\s+(?:to|for|is)\b|"
    r"\b(?:handles|owns|is\s+responsible\s+for|is\s+in\s+charge\s+of|looks\s+after)\s+"
    r"(?:this|that|these|our|all|purchasing|procurement|vendor)|"
    r"\bwenden\s+sie\s+sich\s+(?:bitte\s+)?(?:direkt\s+)?an|"
    r"\b(?:bin|ist)\s+nicht\s+(?:der|die)\s+richtige|\b(?:richtige|zust(?:ä|"
    r"ae)ndige)r?\s+ansprechpartner|"
    r"\bansprechpartner(?:in)?\s+(?:ist|w(?:ä|ae)re|daf(?:ü|ue)r)|\bist\s+(?:daf(?:ü|"
    r"ue)r\s+)?zust(?:ä|ae)ndig|"
    r"\bzust(?:ä|ae)ndig\s+(?:ist|sind|w(?:ä|ae)re)|\bin\s+(?:cc|kopie)\s+gesetzt|\bins\s+cc\b|"
    r"\bkontaktieren\s+sie\s+(?:bitte\s+)?(?:meine?n?|herrn|frau|unsere?n?)\b|"
    r"\bsprechen\s+sie\s+(?:bitte\s+)?(?:mit|mal\s+mit)\b|"
    r"\bcontactez\s+plut[ôo]t|\bcontactez\s+(?:mon|ma|mes|notre|nos|m\.|mme)\b|"
    r"\bpas\s+la\s+(?:bonne\s+)?personne|\bla\s+(?:bonne\s+)?personne\s+(?:[àa]\s+contacter|"
    r"en\s+charge|responsable)|"
    r"\b(?:mis|mise|mets|ajout[ée]|ajoute)\s+en\s+copie|\badressez-vous\s+[àa]|\bvoyez\s+avec\b|"
    r"\bhabl(?:a|e|ar|ad)\s+con\s+(?!usted|ustedes|nosotros|migo|conmigo|su\b|sus\b|tu\b|tus\b)|"
    r"\bcontact(?:a|e|ad|en)\s+(?:a|con)\s+(?!usted|ustedes|nosotros|m[íi]\b)|"
    r"\bno\s+soy\s+la\s+persona|\bla\s+persona\s+(?:adecuada|indicada|correcta|encargada|"
    r"responsable)|"
    r"\b(?:pongo|puse|he\s+puesto|incluyo|he\s+incluido)\s+en\s+copia|\bdir[íi]jase\s+a\b|"
    r"\bprata\s+(?:hellre\s+|ist(?:ä|a)llet\s+)?med\s+(?!mig\b|oss\b|er\b)|"
    r"\bkontakta\s+(?:hellre|ist(?:ä|a)llet|min|mitt|v(?:å|a)r|v(?:å|a)ran)\b|"
    r"\binte\s+r(?:ä|a)tt\s+person|\br(?:ä|a)tt\s+person\s+(?:(?:ä|a)r|att)|\bansvarig\s+f(?:ö|"
    r"o)r\b|"
    r"\bi\s+kopia\b|\bv(?:ä|a)nd\s+dig\s+(?:ist(?:ä|a)llet\s+)?till\b|\bh(?:ö|"
    r"o)r\s+av\s+dig\s+till\s+(?!mig\b)|"
    r"\b(?:forward|pass)(?:ed|ing)?\s+(?:this|it|your\s+\w+)\s+(?:on\s+|along\s+)?to\s+(?:my|"
    r"our)\b|"
    r"\bleite\b[^.\n]{0,40}\ban\s+(?:meine?n?|unsere?n?|herrn|frau)\b[^.\n]{0,40}\bweiter|"
    r"\btransmets?\b[^.\n]{0,30}\b[àa]\s+(?:mon|ma|mes|notre|nos)\b|"
    r"\breenv[íi]o\b[^.\n]{0,30}\ba\s+(?:mi|mis|nuestro|nuestra)\b|"
    r"\bvidarebefordra[rt]?\b[^.\n]{0,30}\btill\s+(?:min|mitt|mina|v(?:å|a)r|v(?:å|a)rt)\b))"
)
_NOT_INTERESTED_RE = re.compile(
    r"(?<!\w)(?=\w)(?:\bnot\s+(?:really\s+|currently\s+)?interested|\bno\s+interest\b|"
    r"\bno,?\s+thanks?\b|"
    r"\bno\s+thank\s+you|\bnot\s+(?:a\s+(?:good\s+)?fit|the\s+right\s+fit|for\s+us|a\s+priority|"
    r"relevant|looking|in\s+the\s+market|at\s+this\s+time|right\s+now)\b|"
    r"\bwe(?:'re|\s+are)\s+(?:all\s+set|good\s+for\s+now|covered|happy\s+with)|"
    r"\bwe\s+(?:already|currently)\s+(?:use|have|work\s+with|run|partner)|\bno\s+need\b|"
    r"\b(?:we'?ll|we\s+will|i'?ll|i\s+will)\s+pass\b|\bpass\s+on\s+this|\bno\s+budget|"
    r"\b(?:we\s+)?don'?t\s+need\b|\bnot\s+something\s+we|\bwon'?t\s+be\s+(?:moving|pursuing|"
    r"needing)|"
    r"\bkein(?:\s+weiteres)?\s+interesse|\bnicht\s+interessiert|\bnein,?\s+danke|\bkein\s+bedarf|"
    r"\bwir\s+(?:nutzen|verwenden|haben|arbeiten\s+mit)\s+(?:bereits|schon)|"
    r"\bpasst\s+(?:leider\s+)?nicht|"
    r"\b(?:derzeit|aktuell)\s+nicht\s+(?:relevant|interessant|aktuell)|\bnicht\s+relevant|"
    r"\bpas\s+(?:vraiment\s+)?int[ée]ress[ée]|\bpas\s+d'int[ée]r[êe]t|\bnon,?\s+merci|"
    r"\bnous\s+(?:utilisons|avons)\s+d[ée]j[àa]|\bne\s+nous\s+int[ée]resse\s+pas|"
    r"\bpas\s+(?:pertinent|prioritaire|le\s+bon\s+moment|pour\s+nous)|\bpas\s+besoin|"
    r"\bno\s+(?:me|nos)\s+interesa|\bno\s+(?:estoy|estamos)\s+interesad|\bno,?\s+gracias|"
    r"\bya\s+(?:usamos|tenemos|utilizamos|trabajamos\s+con|contamos\s+con)|"
    r"\bno\s+es\s+(?:el\s+momento|para\s+nosotros|prioridad|relevante)|\bsin\s+inter[ée]s|"
    r"\bno\s+necesitamos|"
    r"\binte\s+(?:s(?:ä|a)rskilt\s+)?intresserad|\binget\s+intresse|\bnej,?\s+tack|"
    r"\bvi\s+(?:anv(?:ä|a)nder|har|k(?:ö|o)r|jobbar\s+med)\s+redan|\binte\s+(?:aktuellt|relevant|"
    r"intressant)|"
    r"\bpassar\s+(?:oss\s+)?inte|\binget\s+behov|\bbeh(?:ö|o)ver\s+inte|"
    r"\bnot\s+now\b|\bnicht\s+jetzt\b|\bpas\s+maintenant\b|\bahora\s+no\b|\binte\s+nu\b)",
    re.I,
)
_DAYS_EN = r"(?:mon|tues|wednes|thurs|fri)day"
_INTERESTED_RE = re.compile(
    r"(?<!\w)(?=\w)(?:\binterested\b|\bsounds?\s+(?:good|great|interesting|promising|perfect|"
    r"like\s+a\s+plan)|"
    r"\blet'?s\s+(?:talk|chat|connect|meet|speak|do\s+it|set\s+(?:up|something\s+up)|schedule|"
    r"book|find\s+a\s+time|hop\s+on|jump\s+on|get\s+(?:a\s+call|something|time))|"
    r"\b(?:send|share)\s+(?:me\s+|over\s+|us\s+)?(?:some\s+|a\s+few\s+|your\s+)?(?:times|"
    r"availability|"
    r"(?:a\s+|your\s+)?calendar|an?\s+(?:calendar\s+)?invite|a\s+(?:meeting\s+)?link|a\s+meeting)|"
    r"\b(?:can|could|shall|should)\s+we\s+(?:schedule|set\s+up|book|have|do|hop\s+on|jump\s+on|"
    r"arrange|find\s+time|talk|meet|chat)|"
    r"\b(?:book|schedule|set\s+up|arrange)\s+(?:a|an|the)\s+(?:quick\s+|short\s+|brief\s+|"
    r"\d+[\s-]?min(?:ute)?s?\s+)?(?:call|meeting|demo|chat|time)|"
    rf"\bhow\s+about\s+(?:{_DAYS_EN}|tomorrow|next\s+week|\d)|"
    r"\b(?:that\s+)?works\s+(?:for\s+(?:me|us)|great|fine)|"
    r"\b(?:i'?d|i\s+would|we'?d|we\s+would)\s+(?:love|like|be\s+happy|be\s+glad)\s+to\s+"
    r"(?:talk|chat|learn|hear|see|connect|meet|discuss|set|schedule|know\s+more|find\s+out)|"
    r"\b(?:happy|glad)\s+to\s+(?:talk|chat|connect|meet|hop|jump|discuss|take\s+a\s+call|learn)|"
    r"\btell\s+me\s+more\b|"
    rf"\b(?:i'?m|i\s+am|we'?re|we\s+are)\s+(?:free|available)\s+(?:on|at|this|next|tomorrow|"
    rf"{_DAYS_EN})|"
    rf"\b{_DAYS_EN}\s+(?:at\s+)?\d{{1,2}}(?::\d{{2}})?\s*(?:am|pm)\b|"
    r"\byes,?\s+(?:please|let'?s|i'?m\s+interested|sure|definitely)|"
    r"\bgerne?\b|\blasst?\s+uns\s+(?:gerne\s+)?(?:sprechen|telefonieren|reden|treffen|"
    r"einen\s+termin)|"
    r"\blassen\s+sie\s+uns\s+(?:gerne\s+)?(?:sprechen|telefonieren|reden|treffen)|"
    r"\bklingt\s+(?:gut|interessant|spannend|super|toll)|\binteressiert\b|"
    r"\btermin\s+(?:vereinbaren|ausmachen|finden|machen)|\bhabe\s+interesse|"
    r"\bint[ée]ress[ée]e?s?\b|\bvolontiers\b|\b(?:[çc]a|cela)\s+m'int[ée]resse|\bavec\s+plaisir|"
    r"\bon\s+peut\s+(?:en\s+)?(?:parler|discuter|[ée]changer|s'appeler)|"
    r"\b(?:prenons|fixons|calons|planifions)\s+(?:un\s+)?(?:rendez-vous|rdv|appel|cr[ée]neau)|"
    r"\b(?:fixer|caler|planifier|organiser)\s+un\s+(?:rendez-vous|rdv|appel|cr[ée]neau|[ée]change)|"
    r"\bje\s+suis\s+disponible|\bparlons-en\b|"
    r"\bme\s+interesa|\binteresad[oa]s?\b|\bhablemos\b|\bcon\s+gusto|"
    r"\bme\s+parece\s+(?:bien|interesante|genial|perfecto)|\bagend(?:emos|ar|amos)\b|"
    r"\b(?:programar|coordinar|organizar|tener)\s+una\s+(?:llamada|reuni[óo]n|demo)|"
    r"\bestoy\s+disponible|"
    r"\bl(?:å|a)ter\s+(?:intressant|bra|sp(?:ä|a)nnande|kul|toppen)|\bg(?:ä|a)rna\b|"
    r"\bintresserad\w*|"
    r"\b(?:vi\s+kan|kan\s+vi)\s+(?:ta|boka|ha)\s+(?:ett\s+)?(?:samtal|m(?:ö|o)te|telefonm(?:ö|"
    r"o)te)|"
    r"\bboka\s+(?:in\s+)?(?:ett\s+)?(?:m(?:ö|o)te|samtal)|"
    r"\b(?:call|ring|phone)\s+me\b|\bgive\s+me\s+a\s+(?:call|ring)|"
    r"\brufen\s+sie\s+mich\b[^.\n]{0,30}\ban\b|\bruf\s+mich\b[^.\n]{0,30}\ban\b|"
    r"\bappelez-moi\b|\bappelle-moi\b|\bll[áa]m(?:ame|eme)\b|\bring\s+mig\b)",
    re.I,
)
_YES_ONLY_RE = re.compile(
    r"^\W*(?:yes|yes\s+please|sure|absolutely|ja|ja\s+gerne|oui|s[íi]|ja\s+g(?:ä|a)rna|"
    r"gerne|g(?:ä|a)rna|volontiers|claro)\W*$",
    re.I,
)
_NEGATION_RE = re.compile(
    r"\b(?:not|no|never|nicht|kein\w*|pas|ne|nunca|inte|ej|aldrig)\b|n't\b|n'|\bnie\b", re.I
)
_CLAUSE_END_RE = re.compile(
    r"[,.;:!?()\n]|\b(?:but|however|aber|jedoch|mais|pero|men|although|though)\b", re.I
)
_REPLY_PREFIX_RE = re.compile(
    r"^\s*(?:(?:re|aw|sv|vs|fw|fwd|wg|tr|rv|r)\s*(?:\[\d+\])?\s*:\s*)+", re.I
)


@dataclass(frozen=True)
class Split:
    """A body cut into the person's own words (`text`) and what was dropped.

    `unquoted` is the body without quoted history but still with its signature.
    """

    text: str
    unquoted: str
    removed_lines: int


def read_reply(text: str, subject: str) -> Reply:
    """The person's new text and its intent, with reasons."""
    split = split_reply(text)
    intent, reason = intent_of(split.text)
    if intent == Intent.NEUTRAL and not split.text:
        intent, reason = _intent_of_subject(subject)
    why = []
    if split.removed_lines:
        why.append(f"quoted history and signature removed: {split.removed_lines} lines")
    why.append(reason)
    return Reply(text=split.text, intent=intent, why=why)


# --- splitting --------------------------------------------------------------------------


def split_reply(text: str) -> Split:
    """Cut quoted history, then the signature, from a reply's body."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    total = sum(1 for line in lines if line.strip())
    cut = _history_start(lines)
    kept = _drop_quoted(lines[:cut])
    unquoted = _trim(kept)
    own = _trim(_drop_signature(unquoted))
    removed = total - sum(1 for line in own if line.strip())
    return Split(
        text="\n".join(own).strip(), unquoted="\n".join(unquoted).strip(), removed_lines=removed
    )


def _history_start(lines: list[str]) -> int:
    """Index of the first line of quoted history that runs to the end; len(lines) if none."""
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        if _SEPARATOR_RE.match(line) or _FORWARD_INTRO_RE.match(line):
            return i
        if _FROM_LINE_RE.match(line) and _header_block_follows(lines, i):
            return _rule_above(lines, i)
        if _RULE_RE.match(line) and _next_is_from_block(lines, i):
            return i
        end = _attribution_end(lines, i)
        if end is not None and not _next_is_quoted(lines, end + 1):
            return i
    return len(lines)


def _nonblank_after(lines: list[str], start: int, count: int) -> list[int]:
    found: list[int] = []
    for j in range(start, min(len(lines), start + count * 3)):
        if lines[j].strip():
            found.append(j)
            if len(found) == count:
                break
    return found


def _header_block_follows(lines: list[str], i: int) -> bool:
    """A From-style line followed by at least one more Outlook header line."""
    following = _nonblank_after(lines, i + 1, 4)
    return any(_HEADER_LINE_RE.match(lines[j]) for j in following)


def _next_is_from_block(lines: list[str], i: int) -> bool:
    following = _nonblank_after(lines, i + 1, 1)
    return bool(following) and bool(_FROM_LINE_RE.match(lines[following[0]]))


def _rule_above(lines: list[str], i: int) -> int:
    """The header block's start, moved up to a "____" rule right above it."""
    j = i - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    return j if j >= 0 and _RULE_RE.match(lines[j]) else i


def _attribution_end(lines: list[str], i: int) -> int | None:
    """The last line of an attribution ("On ... wrote:") starting at line i, if one does."""
    line = lines[i]
    if _QUOTED_RE.match(line) or len(line) > 300:
        return None
    if _ATTRIBUTION_END_RE.search(line) and (
        "@" in line or any(c.isdigit() for c in line) or _ATTRIBUTION_START_RE.match(line)
    ):
        return i
    if not _ATTRIBUTION_START_RE.match(line):
        return None
    joined = line.strip()
    for j in range(i + 1, min(i + 3, len(lines))):
        if not lines[j].strip() or _QUOTED_RE.match(lines[j]):
            return None
        joined += " " + lines[j].strip()
        if len(joined) > 300:
            return None
        if _ATTRIBUTION_END_RE.search(joined):
            return j
    return None


def _next_is_quoted(lines: list[str], start: int) -> bool:
    following = _nonblank_after(lines, start, 1)
    return bool(following) and bool(_QUOTED_RE.match(lines[following[0]]))


def _drop_quoted(lines: list[str]) -> list[str]:
    """Lines without ">" quotes and the attributions that introduce them."""
    kept: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if _QUOTED_RE.match(line):
            i += 1
            continue
        end = _attribution_end(lines, i) if line.strip() else None
        if end is not None:
            i = end + 1
            continue
        kept.append(line.rstrip())
        i += 1
    return kept


def _trim(lines: list[str]) -> list[str]:
    """Lines without leading and trailing blank lines, runs of blanks squeezed to one."""
    out: list[str] = []
    for line in lines:
        if not line.strip() and (not out or not out[-1].strip()):
            continue
        out.append(line)
    while out and not out[-1].strip():
        out.pop()
    return out


def _drop_signature(lines: list[str]) -> list[str]:
    """Lines without the trailing signature, mobile footer or sign-off block."""
    lines = _cut_at_dashes(lines)
    lines = _cut_at_mobile(lines)
    lines = _trim(lines)
    lines = _cut_at_signoff(lines)
    return _cut_contact_block(_trim(lines))


def _has_text_above(lines: list[str], i: int) -> bool:
    return any(line.strip() for line in lines[:i])


def _cut_at_dashes(lines: list[str]) -> list[str]:
    for i, line in enumerate(lines):
        if _SIG_DASHES_RE.match(line) and _has_text_above(lines, i):
            return lines[:i]
    return lines


def _cut_at_mobile(lines: list[str]) -> list[str]:
    for i, line in enumerate(lines):
        if _MOBILE_RE.match(line):
            return lines[:i]
    return lines


def _cut_at_signoff(lines: list[str]) -> list[str]:
    """Cut at the last sign-off followed by at most a few short lines."""
    after = 0
    for i in range(len(lines) - 1, -1, -1):
        line = lines[i]
        if not line.strip():
            continue
        if _SIGNOFF_RE.match(line):
            return lines[:i] if _has_text_above(lines, i) else lines
        after += 1
        if after > _MAX_SIG_LINES or len(line.strip()) > 60:
            return lines
    return lines


def _cut_contact_block(lines: list[str]) -> list[str]:
    """Cut a trailing name block with no sign-off above it: a name alone, a name and a
    title, or a name followed by contact lines (phone, email, web)."""
    start = len(lines)
    while start > 0 and lines[start - 1].strip():
        start -= 1
    block = [line.strip() for line in lines[start:]]
    if not block or start == 0 or len(block) > _MAX_SIG_LINES:
        return lines
    if not _NAME_LINE_RE.match(block[0]) or _NOT_A_SIGNATURE_RE.match(block[0]):
        return lines
    if len(block) > 2 and not any(_CONTACT_RE.search(b) for b in block):
        return lines
    if any(len(b) > 60 or (b.endswith(("?", "!", ".")) and len(b.split()) > 3) for b in block):
        return lines
    return lines[:start]


# --- intent -----------------------------------------------------------------------------


def intent_of(text: str) -> tuple[Intent, str]:
    """The intent of a person's new text, and the phrase that decided it."""
    body = text[:MAX_INTENT_CHARS]
    if _FOOTER_HINT_RE.search(body):
        body = "\n".join(line for line in body.split("\n") if not _FOOTER_LINE_RE.search(line))
    body = body.replace("\u2019", "'")
    if _STOP_ONLY_RE.match(body):
        return Intent.UNSUBSCRIBE, f"new text is just '{body.strip()}'"
    for intent, pattern in (
        (Intent.UNSUBSCRIBE, _UNSUBSCRIBE_RE),
        (Intent.REFERRAL, _REFERRAL_RE),
        (Intent.NOT_INTERESTED, _NOT_INTERESTED_RE),
    ):
        found = pattern.search(body)
        if found:
            return intent, f"new text says '{_phrase(found.group(0))}'"
    if _YES_ONLY_RE.match(body):
        return Intent.INTERESTED, f"new text is just '{body.strip()}'"
    for found in _INTERESTED_RE.finditer(body):
        if not _negated(body, found.start()):
            return Intent.INTERESTED, f"new text says '{_phrase(found.group(0))}'"
    return Intent.NEUTRAL, "no unsubscribe, referral, interest or refusal in the new text"


def _negated(text: str, start: int) -> bool:
    """Whether a negation word comes shortly before `start`, in the same clause."""
    window = text[max(0, start - 30) : start]
    ends = list(_CLAUSE_END_RE.finditer(window))
    if ends:
        window = window[ends[-1].end() :]
    return bool(_NEGATION_RE.search(window))


def _phrase(matched: str) -> str:
    return " ".join(matched.split())


def _intent_of_subject(subject: str) -> tuple[Intent, str]:
    """An empty body's intent from a subject the person wrote themselves."""
    if _REPLY_PREFIX_RE.match(subject):
        return Intent.NEUTRAL, "no new text"
    own = subject.strip()
    if own and (_STOP_ONLY_RE.match(own) or _UNSUBSCRIBE_RE.search(own)):
        return Intent.UNSUBSCRIBE, f"empty body; subject says '{own}'"
    return Intent.NEUTRAL, "no new text"
