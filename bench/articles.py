"""A day of 15 realistic articles for the benchmark, written into a temp articles dir.

Mixed formats like a real day (the summarizer's .txt, Markdown with front matter,
JSON), non-ASCII names and places, two to four paragraphs each. The text is made
from per-story facts and a pool of newswire-style sentences, deterministically
(seeded), so every run sends the same bytes. `PARAGRAPH_SENTENCES` is tuned so
the rendered edition.html is about 40 KB (the benchmark checks it with
`newsletter preview` and prints the size).
"""

from __future__ import annotations

import datetime as dt
import json
import random
from dataclasses import dataclass
from pathlib import Path

#: Sentences per paragraph; with 3 paragraphs an article this gives ~40 KB of HTML.
PARAGRAPH_SENTENCES = 4
PARAGRAPHS = 3


@dataclass(frozen=True)
class Story:
    slug: str
    headline: str
    place: str
    source: str
    person: str
    role: str
    subject: str  # what the story is about, as a noun phrase
    figure: str  # a number in the story


STORIES = (
    Story(
        "valencia-flood-barriers",
        "Valencia Finishes Flood Barriers Along the Turia Ahead of Winter Storms",
        "València, Spain",
        "elpais.com",
        "Inmaculada Ferrer",
        "the city's infrastructure chief",
        "the new flood barriers",
        "14 kilometres",
    ),
    Story(
        "gdansk-shipyard-wind",
        "Gdańsk Shipyard Wins Order for Offshore Wind Foundations",
        "Gdańsk, Poland",
        "notesfrompoland.com",
        "Piotr Wiśniewski",
        "the shipyard's chief executive",
        "the foundation contract",
        "62 monopiles",
    ),
    Story(
        "nairobi-bus-rapid-transit",
        "Nairobi Opens First Bus Rapid Transit Line After Years of Delay",
        "Nairobi, Kenya",
        "nation.africa",
        "Wanjiru Kamau",
        "the transport secretary",
        "the bus rapid transit line",
        "27 stations",
    ),
    Story(
        "quebec-maple-reserve",
        "Québec Releases Maple Syrup Reserve as Warm Spring Cuts Harvest",
        "Québec City, Canada",
        "cbc.ca",
        "Hélène Bouchard",
        "a spokeswoman for the producers' federation",
        "the strategic reserve",
        "22 million kilograms",
    ),
    Story(
        "hanoi-street-food-licences",
        "Hanoi Introduces Licences for Street Food Vendors in the Old Quarter",
        "Hanoi, Vietnam",
        "vnexpress.net",
        "Nguyễn Thị Lan",
        "the deputy mayor",
        "the licensing scheme",
        "3,400 vendors",
    ),
    Story(
        "chile-lithium-brine",
        "Chile Approves Direct Lithium Extraction Trial in the Atacama",
        "Santiago, Chile",
        "reuters.com",
        "Camila Órdenes",
        "the mining minister",
        "the extraction trial",
        "40,000 tonnes a year",
    ),
    Story(
        "oslo-electric-ferries",
        "Oslo Fjord Ferries Complete First Full Year on Battery Power",
        "Oslo, Norway",
        "nrk.no",
        "Sigrid Ødegård",
        "the operator's technical director",
        "the battery ferries",
        "1.2 million passengers",
    ),
    Story(
        "cairo-metro-line-four",
        "Cairo Begins Tunnelling for Metro Line Four Under the Nile",
        "Cairo, Egypt",
        "ahram.org.eg",
        "Karim Abdel-Fattah",
        "the national tunnel authority's chairman",
        "the tunnel boring work",
        "17.6 kilometres",
    ),
    Story(
        "munich-oktoberfest-deposit",
        "Munich Trials Reusable Cup Deposit Across Its Christmas Markets",
        "Munich, Germany",
        "sueddeutsche.de",
        "Jürgen Hölzl",
        "the head of the city's waste board",
        "the cup deposit",
        "two euros a cup",
    ),
    Story(
        "lima-desalination",
        "Lima Signs Contract for Desalination Plant to Ease Summer Shortages",
        "Lima, Peru",
        "elcomercio.pe",
        "Rosa Quispe Huamán",
        "the head of the water utility",
        "the desalination plant",
        "400 litres a second",
    ),
    Story(
        "tbilisi-cable-car",
        "Tbilisi Restores Soviet-Era Cable Car to the Mtatsminda Plateau",
        "Tbilisi, Georgia",
        "civil.ge",
        "Giorgi Beridze",
        "the city's heritage officer",
        "the restored cable car",
        "500 metres",
    ),
    Story(
        "adelaide-heat-shelters",
        "Adelaide Opens Overnight Heat Shelters as Temperatures Pass 44°C",
        "Adelaide, Australia",
        "abc.net.au",
        "Sarah O'Connell",
        "the state's emergency commissioner",
        "the heat shelters",
        "44.3 degrees",
    ),
    Story(
        "istanbul-ferry-timetable",
        "Istanbul Adds Late-Night Bosphorus Ferries Through the Winter",
        "İstanbul, Türkiye",
        "dailysabah.com",
        "Ayşe Yılmaz",
        "the ferry operator's general manager",
        "the late-night ferries",
        "11 extra crossings",
    ),
    Story(
        "bogota-bike-lanes",
        "Bogotá Links Its Ciclovía Routes Into a Permanent Network",
        "Bogotá, Colombia",
        "eltiempo.com",
        "Andrés Muñoz",
        "the city's mobility secretary",
        "the bike network",
        "650 kilometres",
    ),
    Story(
        "helsinki-sauna-heat",
        "Helsinki Captures Waste Heat From Public Saunas for District Heating",
        "Helsinki, Finland",
        "yle.fi",
        "Aino Mäkelä",
        "an engineer at the city energy company",
        "the heat recovery system",
        "3 megawatts",
    ),
)

_OPENERS = (
    "{place} - {date} - Officials said on {weekday} that {subject} would be in place by the end "
    "of the month, after a review that took longer than planned.",
    "{place} - {date} - {person}, {role}, told reporters on {weekday} that {subject} had passed "
    "its final inspection and would open to the public within weeks.",
    "{place} - {date} - Work on {subject} moved into its last phase this week, according to "
    "figures published on {weekday} by the regional government.",
)

_POOL = (
    "The project covers {figure}, and its budget was raised twice since the first estimate.",
    "{person} said the schedule had slipped because of supply problems, not because of the design.",
    "Residents who spoke at a public meeting last month asked for clearer information about costs.",
    "Opposition councillors said the plan was sound but criticised how the tender was run.",
    "The national government is paying for about half of the work through a recovery fund.",
    "Engineers expect maintenance costs to fall once the older equipment is retired next year.",
    "Local businesses said the construction had cut footfall, and asked for compensation.",
    "A report by the university's urban studies department called the results encouraging.",
    "Similar schemes in other cities have taken several years to show measurable effects.",
    "Unions representing the workers said staffing levels had to rise to match the new service.",
    "\u201cWe built this for the next forty years, not the next election,\u201d {person} said.",
    "The authority will publish monthly figures so that the public can follow the results.",
    "Critics argue that {subject} addresses the symptoms rather than the underlying causes.",
    "Insurers say they are watching the outcome closely before adjusting premiums.",
    "Environmental groups welcomed the decision but warned against declaring victory too early.",
    "Tenders for the second phase, which would extend {subject} further, open in the spring.",
    "A survey of 1,500 households found that two thirds supported the change.",
    "The operator said tickets and fares would not change before the end of the year.",
    "Officials declined to say whether the final cost would exceed the revised budget.",
    "The first figures, covering {figure}, will be reviewed by an independent panel in March.",
)


def article_paragraphs(story: Story, day: dt.date, rng: random.Random) -> list[str]:
    fields = {
        "place": story.place,
        "date": f"{day:%B} {day.day}th, {day.year}",
        "weekday": f"{day:%A}",
        "person": story.person,
        "role": story.role,
        "subject": story.subject,
        "figure": story.figure,
    }
    paragraphs = []
    for number in range(PARAGRAPHS):
        sentences = [rng.choice(_OPENERS)] if number == 0 else []
        sentences += rng.sample(_POOL, PARAGRAPH_SENTENCES - len(sentences))
        text = " ".join(s.format(**fields) for s in sentences)
        paragraphs.append(text[0].upper() + text[1:])
    return paragraphs


def url_of(story: Story, day: dt.date) -> str:
    return f"https://www.{story.source}/{day:%Y/%m/%d}/{story.slug}"


def write_day(root: Path, day: dt.date, seed: int = 20261125) -> Path:
    """Write 15 articles for `day` into root/YYYY-MM-DD/ and return that folder."""
    folder = root / day.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for index, story in enumerate(STORIES, start=1):
        paragraphs = article_paragraphs(story, day, rng)
        name = f"{index:02d}-{story.slug}"
        kind = ("txt", "txt", "md", "txt", "json")[index % 5]
        if kind == "txt":
            dates = [day - dt.timedelta(days=n) for n in range(1 + index % 3)]
            lines = [f"{d:%a, %B} {d.day}, {d.year}" for d in dates]
            body = "\n".join(lines) + "\n\n" + story.headline + "\n\n" + "\n\n".join(paragraphs)
            body += f"\n\n\nRead the Full {story.source} Article at:\n[ {url_of(story, day)} ]\n"
            (folder / f"{name}.txt").write_text(body, encoding="utf-8")
        elif kind == "md":
            front = (
                f'---\nheadline: "{story.headline}"\nurl: {url_of(story, day)}\n'
                f"source: {story.source}\ndate: {day.isoformat()}\n---\n\n"
            )
            (folder / f"{name}.md").write_text(front + "\n\n".join(paragraphs) + "\n", "utf-8")
        else:
            data = {
                "headline": story.headline,
                "url": url_of(story, day),
                "source": story.source,
                "date": day.isoformat(),
                "summary": paragraphs,
            }
            (folder / f"{name}.json").write_text(
                json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8"
            )
    return folder
