import pytest

from infer.segment import BACKENDS, is_furniture, model_text, segment

CLUTTERED = (
    "Minister quits over housing row\r\n"
    "By Anna Kowalski, Staff Reporter\r\n"
    "Updated at 14:32 GMT\n\n"
    "LAGOS, Nigeria (AP) — Gen. Musa said the U.S. offered $3.5 million. &quot;We will not,&quot; he said.  "
    "“We will never sign. Not this year.” Ngozi Müller, 34, agreed...\n"
    "Photo: Reuters/John Doe\n"
    "Firefighters work at the scene on Monday.\n"
    "The rate fell to 3.5 per cent. Dr. Smith arrived at 5 p.m. on Monday.\n"
    "Source link\nPosted in World\nLeave a Comment\n"
    "Anna Kowalski is a senior reporter covering politics.\n"
)


@pytest.mark.parametrize("backend", BACKENDS)
def test_offsets_slice_back_exactly(backend):
    spans = segment(CLUTTERED, title="Minister quits over housing row", backend=backend)
    assert spans
    for span in spans:
        assert CLUTTERED[span.start : span.end] == span.text
        assert span.text == span.text.strip()
    starts = [s.start for s in spans]
    assert starts == sorted(starts)


def test_default_segmenter_sentences_and_furniture():
    texts = [s.text for s in segment(CLUTTERED, title="Minister quits over housing row")]
    assert texts[0] == "Gen. Musa said the U.S. offered $3.5 million."  # dateline dropped, abbreviations kept
    assert "&quot;We will not,&quot; he said." in texts
    assert "Firefighters work at the scene on Monday." in texts  # captions are kept
    assert "Dr. Smith arrived at 5 p.m. on Monday." in texts
    for junk in ("Source link", "Posted in World", "Leave a Comment", "Photo: Reuters/John Doe",
                 "By Anna Kowalski, Staff Reporter", "Updated at 14:32 GMT", "Minister quits over housing row"):
        assert junk not in texts
    assert not any(t.startswith("Anna Kowalski is") for t in texts)


def test_model_text_decodes_entities_and_whitespace():
    assert model_text("&quot;We  will\tnot,&quot; he said.") == '"We will not," he said.'


@pytest.mark.parametrize("line", ["Photo: AFP", "(Getty Images)", "Read more: Floods in Spain", "Share this article",
                                  "Posted in Business", "Tags: floods, weather", "Updated: 12 March 2026, 09:14"])
def test_furniture_lines(line):
    assert is_furniture(line)


@pytest.mark.parametrize("line", ["Police said the photo was taken in May.", "By noon, the crowd had grown to 5,000.",
                                  "Source: the ministry would not say.", "He was updated on the case daily."])
def test_real_sentences_are_not_furniture(line):
    assert not is_furniture(line)


def test_unicode_offsets():
    text = "Łódź’s mayor said “no”. São Paulo agreed. 東京 followed."
    spans = segment(text)
    assert [text[s.start : s.end] for s in spans] == [s.text for s in spans]
    assert spans[-1].text.endswith("followed.")


def test_dateline_cut_by_the_segmenter_is_dropped():
    text = "ORLANDO, Fla. — The school board voted 4-1 on Tuesday night.\nWASHINGTON (AP) — Congress left town."
    assert [s.text for s in segment(text)] == ["The school board voted 4-1 on Tuesday night.", "Congress left town."]


def _sample_lines() -> list[str]:
    """Every line of the sample articles, and the real-news articles' sentences as one paragraph an article and as
    paragraphs of one to five sentences."""
    import glob
    import json
    import re

    from conftest import ROOT

    lines = [m.group() for path in sorted(glob.glob(str(ROOT / "data/articles/*.jsonl"))) for row in open(path)
             for m in re.finditer(r"[^\r\n]+", json.loads(row)["text"])]
    for path in sorted(glob.glob(str(ROOT / "data/corpus/real/raw/*.jsonl")))[:6]:
        for row in open(path):
            sentences = [s["text"] for s in json.loads(row)["sentences"]]
            lines.append(" ".join(sentences))
            lines += [" ".join(sentences[k:k + 1 + k % 5]) for k in range(0, len(sentences), 3)]
    return lines


def test_syntok_fast_path_equals_syntok():
    """The fast path answers most lines itself, and cuts most others into pieces it can answer or that syntok reads
    alone: the sentences must be exactly syntok's on every line."""
    from infer.segment import easy_spans, syntok_only, syntok_spans

    lines = _sample_lines()
    assert sum(easy_spans(line) is not None for line in lines) > len(lines) / 2
    for line in lines:
        assert list(syntok_spans(line)) == list(syntok_only(line)), line


@pytest.mark.parametrize("line", [
    "He left. Mr. Smith stayed.", "It rose 3.5 per cent. Then it fell.", "The U.S. agreed. So did Canada.",
    "Markets fell (sharply). Then rallied.", "A; b. C", "He said: “No.” Then left.", "Go... Now.",
    "In 2020. Jan Smith said.", "Chapter II. The end.", "Café Müller closed. Staff left.",
    "He said: ‘He got caught.’” Within a week, he left.", "She asked why? Then left.",
    "It is a lapse for PayMyTab. By leaving it open, they erred.", "Rain, said the MoH. “More came.",
    "Troops killed 500 personnel. PETALING JAYA: PKR rejected it.", "He said no. I think so.",
    "They came in 2019. Feb 6 was the day.", "He left (it rained. Then) it stopped. Next came.",
    "He left (it rained; then it stopped). Next came. Then we went home.", "Police said. Mr Smith left; A went.",
    "It was 66 kg (145 lbs), with hair. Then it left.", "Moody's (AA) rating rose. Then it fell.",
    "(AP) The firm rose. Then it fell.", "He said (a) and (b) it fell. Then (c) came.", "Mr. Smith left. Then Mr. The.",
    "The firm (Reuters reported it first and the story was later confirmed by the firm) rose. Then it fell.",
    "Shares of Apple Inc. Chief rose. Apple Inc. The firm said so. Gen. Musa (ret.) spoke.", "It fell (sharply)). Then.",
    "It was years ago. The firm said so. It happened in May. Police said so.", "He came in Jan. Smith said.",
    "It was in mar. Police said so.", "In the U.S. The officials said so. In the U.S. Officials said so. Then it rose.",
    "At 10 a.m. Then it rose. At 10 a.m. The firm rose. He met U.N. staff.", "The U.S. AIG unit fell. It was the U.S.",
    'At 3.30pm. "He left." At 11.13am. The end.', "WASHINGTON (AP) — Gunmen fired. Then they fled.", "He came; 'it' went.",
    "He got an A. Then he left. It is vitamin D. He said so.", "It was a. The end came.", 'He was "Mr". Smith left.',
    "He said yes.He left.", "It rose to £13.85. Importantly it fell.",
])
def test_syntok_fast_path_tricky_lines(line):
    from infer.segment import easy_spans, syntok_only, syntok_spans

    easy = easy_spans(line)
    assert easy is None or easy == list(syntok_only(line))
    assert list(syntok_spans(line)) == list(syntok_only(line))


@pytest.mark.parametrize("line", [
    'It was "a professional issue". Five cases came.', "It is the role of China'. The CMA said so.",
    "The Vera C. Rubin Observatory opened. It was plan B. The firm said so.", "As of 7:30 a.m., BlueRiver said so.",
    "It was in Ritchot, Man., according to police. Energy Inc. for about $5 left.", "He left. and then he came.",
    "A Weather.com report said so.", "It was 10%. The rest went. It was COVID-19. The rest.",
    "It was in the 1960s. Some rose. It was £25,900. The firm paid.",
    "The economy in ruins. 'It is obvious,' he said. He said sorry. \"I'm very sorry,\" she said.",
    "It was designed for ports; much of it went elsewhere. Then Akufo-Addo. The end came.",
    "He flew to the airport (YIA). Officials said so. It cost ($3.9 billion) from them. Then it fell.",
    "LAGOS, Nigeria (AP) — Gunmen fired on a post. Then they fled.",
])
def test_syntok_fast_path_answers_common_news_forms(line):
    """Quotes before the full stop, initials, terminals before commas or lowercase words, semicolons before a
    lowercase word, brackets before a full stop or a dash: answered without syntok, with syntok's sentences."""
    from infer.segment import easy_spans, syntok_only

    assert easy_spans(line) == list(syntok_only(line))
