"""README.md and docs/*.md: every relative link reaches an existing file (and heading).

The README is the front door and the rest lives in docs/, one page per topic; a page renamed or a
heading reworded must not leave a dead link behind. Anchors follow GitHub's rule: the heading in
lower case, punctuation other than '-' and '_' dropped, spaces turned into '-'.
"""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md')),
         ROOT / 'd2net_jax' / 'methods' / 'README.md']
# [text](target) and ![alt](target), not inside code; targets with a scheme are external.
LINK = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)\)')


def _prose(text):
  """The text without fenced code blocks and inline code spans."""
  text = re.sub(r'^```.*?^```', '', text, flags=re.S | re.M)
  return re.sub(r'`[^`\n]*`', '', text)


def _anchors(path):
  """GitHub's anchors of the headings of a markdown file (duplicates get -1, -2, ...)."""
  seen, anchors = {}, set()
  for line in _prose(path.read_text()).splitlines():
    match = re.match(r'#{1,6} +(.*?) *#* *$', line)
    if not match:
      continue
    slug = re.sub(r'[^\w\- ]', '', match.group(1).lower().replace('`', '')).replace(' ', '-')
    count = seen.get(slug, 0)
    seen[slug] = count + 1
    anchors.add(slug if count == 0 else f'{slug}-{count}')
  return anchors


def _links(page):
  for target in LINK.findall(_prose(page.read_text())):
    if re.match(r'[a-z][a-z0-9+.-]*:', target):  # http:, https:, mailto:
      continue
    yield target


def _dead_links(page):
  """'target: why' for each relative link of `page` to a missing file or heading."""
  bad = []
  for target in _links(page):
    file_part, _, anchor = target.partition('#')
    path = (page.parent / file_part).resolve() if file_part else page
    if not path.exists():
      bad.append(f'{target}: no such file')
    elif anchor and path.suffix == '.md' and anchor not in _anchors(path):
      bad.append(f'{target}: no heading with anchor #{anchor} in {path.name}')
  return bad


def test_anchors_follow_github(tmp_path):
  # Headings of these docs, with the anchors GitHub gives them.
  cases = {"SAL's localizer ('oic')": 'sals-localizer-oic',
           'How hard is the synthetic benchmark?': 'how-hard-is-the-synthetic-benchmark',
           'DFE (Dual-Feature Enhancement, ICASSP 2023) over a base method':
               'dfe-dual-feature-enhancement-icassp-2023-over-a-base-method',
           'SAL: paper vs code': 'sal-paper-vs-code',
           'Multi-device, multi-host and TPU': 'multi-device-multi-host-and-tpu'}
  path = tmp_path / 'page.md'
  for heading, anchor in cases.items():
    path.write_text(f'## {heading}\n')
    assert _anchors(path) == {anchor}
  path.write_text('## Same\n\n## Same\n')
  assert _anchors(path) == {'same', 'same-1'}


@pytest.mark.parametrize('page', PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
  bad = _dead_links(page)
  assert not bad, f'{page.relative_to(ROOT)}: dead links:\n' + '\n'.join(bad)


def test_readme_links_every_docs_page():
  linked = {(ROOT / t.partition('#')[0]).resolve() for t in _links(ROOT / 'README.md')}
  missing = [p.name for p in sorted((ROOT / 'docs').glob('*.md')) if p.resolve() not in linked]
  assert not missing, f'README.md links no docs page of: {missing}'


def test_the_check_catches_dead_links(tmp_path):
  (tmp_path / 'other.md').write_text('# Other\n\n## A part\n')
  page = tmp_path / 'page.md'
  page.write_text('# Title\n\n[ok](#title) [gone](missing.md) [no heading](#nope)\n'
                  '[there](other.md#a-part) [not there](other.md#b-part) ![img](missing.png)\n'
                  '[web](https://example.com/x.md) `[code](not-a-link.md)`\n\n'
                  '```\n[in a block](also-not-a-link.md)\n```\n')
  assert [b.split(':')[0] for b in _dead_links(page)] == [
      'missing.md', '#nope', 'other.md#b-part', 'missing.png']
