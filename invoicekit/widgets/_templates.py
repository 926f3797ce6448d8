"""The widgets' Jinja templates, shipped as code (so no package-data entry can go missing).

Rendered with autoescape on (see :func:`invoicekit.widgets._base.render`): every value a
template prints is HTML-escaped, whatever it holds, except the fragments marked ``| safe``,
which are these templates' own output (style, head, keys, card, decisions, result). The look follows the reports (the
same highlight colour for a changed value, the same fonts).
"""

from __future__ import annotations

__all__ = ["TEMPLATES"]

_STYLE = """\
<style>
.ikw{font:13px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1f2328}
.ikw-cell{padding:3px 6px;border-bottom:1px solid #d0d7de;min-height:1.5em;overflow-wrap:anywhere;
  font-variant-numeric:tabular-nums;font:13px/1.45 system-ui,"DejaVu Sans",sans-serif}
.ikw-th{font-weight:600;background:#f6f8fa;font-size:12.5px}
.ikw-chg{background:#fff1b8;color:#7a4b00;font-weight:600;box-shadow:inset 3px 0 0 #d4a72c}
.ikw-chosen{outline:2px solid #1a7f37;outline-offset:-2px}
.ikw-need{color:#cf222e;font-weight:600}
.ikw-na{color:#8c959f}
.ikw-hint{color:#656d76;font-size:12px}
.ikw-title{font-size:15px;font-weight:600;margin:2px 0}
.ikw-sub{color:#656d76;margin:0 0 4px}
.ikw-msg{color:#7a4b00;min-height:1.2em}
.ikw kbd,.ikw-keys-doc kbd{border:1px solid #d0d7de;border-bottom-width:2px;border-radius:3px;padding:0 4px;
  background:#f6f8fa;font:12px ui-monospace,"DejaVu Sans Mono",monospace}
.ikw table{border-collapse:collapse;margin:4px 0 8px}
.ikw th,.ikw td{border-bottom:1px solid #d0d7de;padding:3px 6px;text-align:left;vertical-align:top}
.ikw thead th{background:#f6f8fa;font-weight:600;font-size:12.5px}
.ikw td.num,.ikw th.num{text-align:right;font-variant-numeric:tabular-nums}
.ikw caption{text-align:left;font-weight:600}
</style>
"""

# one value of a field, in the live grid
_CELL = """\
<div class="ikw-cell {{ cls }}"{% if title %} title="{{ title }}"{% endif %}>
{%- if value is none %}<span class="ikw-na">&mdash;</span>{% else %}{{ value }}{% endif -%}
{%- if note %} <span class="ikw-hint">{{ note }}</span>{% endif -%}
</div>"""

_KEYS = """\
<div class="ikw-keys-doc ikw-hint">Keys (type them in the key box
{%- if shortcut_note %}; {{ shortcut_note }}{% endif %}):
{% for key, what in keys %}<kbd>{{ key }}</kbd> {{ what }}{% if not loop.last %} &middot; {% endif %}{% endfor %}
</div>"""

# the invoice a conflict is about
_CONFLICT_HEAD = """\
<div class="ikw">
<div class="ikw-title">Conflict {{ position }} of {{ count }}: {{ number }}
{%- if client %} &middot; {{ client }}{% endif %}</div>
<div class="ikw-sub">id <code>{{ id }}</code> &middot; {{ reason }} &middot;
local v{{ local_version }} ({{ local_total }}) &middot; central v{{ central_version }} ({{ central_total }})
{%- if base_version is not none %} &middot; base v{{ base_version }}{% else %} &middot; no base snapshot{% endif %}
 &middot; {{ needs }} field{{ '' if needs == 1 else 's' }} need{{ 's' if needs == 1 else '' }} a decision
{%- if whole %} &middot; <b>whole invoice: {{ whole }}</b>{% endif %}</div>
</div>"""

_PROGRESS = """\
<span class="ikw">{{ decided }} of {{ count }} conflict{{ '' if count == 1 else 's' }} decided
&middot; {{ choices }} choice{{ '' if choices == 1 else 's' }} made</span>"""

# a DataFrame as a small table (values escaped; numbers right-aligned)
_TABLE = """\
<div class="ikw"><table>
{% if caption %}<caption>{{ caption }}</caption>{% endif %}
<thead><tr>{% for c in columns %}<th{% if c in numeric %} class="num"{% endif %}>{{ c }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in rows %}<tr>{% for v in row %}<td{% if columns[loop.index0] in numeric %} class="num"{% endif %}>
{%- if v is none %}<span class="ikw-na">&mdash;</span>{% else %}{{ v }}{% endif %}</td>{% endfor %}</tr>
{% endfor %}
</tbody></table>
{% if more %}<p class="ikw-hint">&hellip; {{ more }} more row{{ '' if more == 1 else 's' }}</p>{% endif %}
{% if not rows %}<p class="ikw-hint">{{ empty }}</p>{% endif %}
</div>"""

# the whole current conflict as one static table (the _repr_html_ fallback)
_CONFLICT_STATIC = """\
{{ style | safe }}
<div class="ikw">
<p><b>ConflictReview</b> ({{ strategy }}): {{ decided }} of {{ count }} conflicts decided, {{ choices }} choices made.
{% if not count %}Nothing to decide.{% endif %}</p>
{% if count %}
{{ head | safe }}
<table>
<thead><tr><th>#</th><th>field</th><th>base</th><th>local</th><th>central</th><th>choice</th></tr></thead>
<tbody>
{% for r in rows %}<tr>
<td>{{ r.n or '' }}</td><td{% if r.need %} class="ikw-need"{% endif %} title="{{ r.field }}">{{ r.label }}</td>
{% for side in ('base', 'local', 'central') %}<td class="{{ r.cls[side] }}">
{%- if r[side] is none %}<span class="ikw-na">&mdash;</span>{% else %}{{ r[side] }}{% endif %}</td>{% endfor %}
<td class="ikw-hint">{{ r.choice }}</td>
</tr>{% endfor %}
</tbody></table>
{% endif %}
{{ keys | safe }}
{{ decisions | safe }}
</div>"""

# a duplicate candidate: its invoices side by side, field by field
_CARD = """\
<div class="ikw">
<div class="ikw-title">{{ kind }} {{ position }} of {{ count }}{% if score is not none %}: score {{ score }}{% endif %}
{%- if action %} &middot; {{ action }}{% endif %}</div>
{% if reason %}<div class="ikw-sub">{{ reason }}</div>{% endif %}
{% if not have_invoices %}<div class="ikw-hint">The invoices themselves were not given
(DuplicateReview(..., invoices=set) or store=...): similarities only.</div>{% endif %}
<table>
<thead><tr><th>field</th>
{% for m in members %}<th>{{ m.label }}<br><code class="ikw-hint">{{ m.id }}</code></th>{% endfor %}
{% if sims %}<th class="num">similarity</th>{% endif %}</tr></thead>
<tbody>
{% for r in rows %}<tr><td>{{ r.field }}</td>
{% for v in r['values'] %}<td class="{{ 'ikw-chg' if r.differs and not loop.first else '' }}">
{%- if v is none %}<span class="ikw-na">&mdash;</span>{% else %}{{ v }}{% endif %}</td>{% endfor %}
{% if sims %}<td class="num{{ ' ikw-chg' if r.sim is not none and r.sim < 1 else '' }}">
{%- if r.sim is none %}<span class="ikw-na">&mdash;</span>{% else %}{{ '%.3f' % r.sim }}{% endif %}</td>{% endif %}
</tr>{% endfor %}
</tbody></table>
{% if verdicts %}<div class="ikw-sub">
{%- for v in verdicts %}{{ v }}{% if not loop.last %} &middot; {% endif %}{% endfor %}</div>{% endif %}
</div>"""

_DUPLICATE_STATIC = """\
{{ style | safe }}
<div class="ikw">
<p><b>DuplicateReview</b>: {{ decided }} of {{ count }} {{ unit }} decided
{%- if stored %}, {{ stored }} pair{{ '' if stored == 1 else 's' }} already decided in the store left out{% endif %}.
{%- if not count %} Nothing to review.{% endif %}</p>
{{ card | safe }}
{{ keys | safe }}
{{ decisions | safe }}
</div>"""

_RENDER_STATIC = """\
{{ style | safe }}
<div class="ikw">
<p><b>RenderBatch</b>: {{ live }} live invoice{{ '' if live == 1 else 's' }} into <code>{{ out_dir }}</code>,
template {{ template }}, locale {{ locale }}{% if einvoice %}, {{ einvoice }} e-invoices{% endif %}.</p>
{% if preview %}<img alt="page 1 of {{ preview_of }}" src="data:image/png;base64,{{ preview }}"
 style="max-width:420px;border:1px solid #d0d7de">{% endif %}
{{ result | safe }}
</div>"""

TEMPLATES = {
    "style.html": _STYLE,
    "cell.html": _CELL,
    "keys.html": _KEYS,
    "conflict_head.html": _CONFLICT_HEAD,
    "progress.html": _PROGRESS,
    "table.html": _TABLE,
    "conflict_static.html": _CONFLICT_STATIC,
    "card.html": _CARD,
    "duplicate_static.html": _DUPLICATE_STATIC,
    "render_static.html": _RENDER_STATIC,
}
