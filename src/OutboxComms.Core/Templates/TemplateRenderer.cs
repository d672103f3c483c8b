using System.Collections.Concurrent;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using OutboxComms.Core.Customers;
using OutboxComms.Core.Data;
using OutboxComms.Core.Messages;
using Scriban;
using Scriban.Functions;
using Scriban.Parsing;
using Scriban.Runtime;
using Scriban.Syntax;

namespace OutboxComms.Core.Templates;

/// <summary>A template text failed to parse or render; the message says where and why.</summary>
public sealed class TemplateException(string message, Exception? inner = null) : Exception(message, inner)
{
    /// <summary>The render ran out of its time (a wall-clock limit, which a pause of the process can exhaust too), rather than failed.</summary>
    public bool TimedOut { get; init; }
}

/// <summary>
/// Renders Scriban templates in a sandbox: the model is built from JSON values only (no .NET object
/// is reachable, so no member or file access), <c>include</c> has no loader, and loops, recursion,
/// output size and time are bounded. Parsed templates are cached by text, so a changed template is
/// parsed again and an unchanged one never is.
/// </summary>
public sealed partial class TemplateRenderer(TimeSpan? timeout = null, TimeProvider? clock = null)
{
    private const int CacheLimit = 10_000;

    /// <summary>
    /// The culture templates render and parse in: Indian English. <c>date.parse "30/11/2026"</c>
    /// reads day first, <c>math.format "N0"</c> groups in lakhs and crores (11,80,000), month names
    /// are English. A template may still name another culture in a function's culture argument.
    /// </summary>
    public static readonly CultureInfo Culture = CultureInfo.GetCultureInfo("en-IN");

    // The context tag holding the customer's local time for date.now.
    private const string LocalNowTag = "outboxcomms.local_now";

    // Scriban's built-in functions (string.*, date.*, html.*, …), built once and frozen. A context
    // made with `new TemplateContext()` deep-clones them, with reflection over every function, on
    // each render: the benchmark showed that as the worker's largest cost of its own. Frozen, they
    // are safe to share between concurrent renders; a template that tries to redefine one (e.g.
    // `date.format = …`) gets a render error instead of changing it for everyone.
    private static readonly ScriptObject Builtins = FrozenBuiltins();
    private readonly ConcurrentDictionary<string, Template> cache = new(StringComparer.Ordinal);
    private readonly TimeSpan timeout = timeout ?? TimeSpan.FromSeconds(2);
    // The wall clock of the render deadline; a test may pass a fake one.
    private readonly TimeProvider clock = clock ?? TimeProvider.System;

    /// <summary>Parses without rendering; null when valid, else the error with line and column.</summary>
    public static string? Validate(string text)
    {
        var template = Template.Parse(text ?? "");
        return template.HasErrors ? Describe(template.Messages) : null;
    }

    /// <summary>Renders one template text against a model.</summary>
    public string Render(string text, ScriptObject model)
    {
        using var session = Session(model);
        return session.Render(text);
    }

    /// <summary>
    /// A render context for one model, for rendering several texts of the same message (subject,
    /// body, HTML body, provider template parameters): one context and one deadline for all of them
    /// instead of one per text. The time limit covers the whole session.
    /// </summary>
    /// <param name="model">What the template sees (<see cref="Model"/>).</param>
    /// <param name="localNow">
    /// What <c>date.now</c> returns: the recipient's wall-clock time. Without it, the host's
    /// (Scriban's own behaviour), which in a container is UTC.
    /// </param>
    public RenderSession Session(ScriptObject model, DateTime? localNow = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        return new RenderSession(this, model, localNow);
    }

    /// <summary>
    /// One spare context per thread. A context allocates dozens of objects when built (its
    /// stacks, accessor caches and argument arrays), which showed as a tenth of the worker's CPU;
    /// a session takes the spare and gives it back after <see cref="TemplateContext.Reset"/> (its
    /// model, outputs and cultures popped, its caches cleared) — but only when every render of the
    /// session completed, so no half-finished state of a failed render is ever reused.
    /// </summary>
    [ThreadStatic]
    private static TemplateContext? spareContext;

    /// <summary>The longest text a render may produce, and the longest value it may write, in characters.</summary>
    public const int OutputLimit = 1_000_000;

    /// <summary>The iterations one loop may take, its nested loops' steps counted in it (Scriban restarts the count at each top-level loop).</summary>
    public const int LoopLimit = 100_000;

    /// <summary>The spare of <see cref="spareContext"/> for HTML bodies (see <see cref="HtmlContext"/>).</summary>
    [ThreadStatic]
    private static HtmlContext? spareHtmlContext;

    private static TemplateContext NewContext() => Configure(new TemplateContext(Builtins));

    private static T Configure<T>(T context) where T : TemplateContext
    {
        // Scriban counts every iteration of a top-level loop and the loops inside it (and
        // array.join, map…) against one budget: at its default of 1,000, a statement of 50 clients × 25 filings
        // failed. The render's deadline and output limit bound the work; this stops an endless
        // loop long before either.
        context.LoopLimit = LoopLimit;
        context.RecursiveLimit = 20;
        context.ObjectRecursionLimit = 20;
        // A rendered text, or any one value in it, of up to a million characters (a long fee
        // statement in HTML); beyond that the render fails. Scriban's default is to cut the text
        // short with an ellipsis, which sent statements without their end.
        context.LimitToString = OutputLimit;
        context.OutputLimit = OutputLimit;
        context.OnOutputLimit = ScriptLimitBehavior.Throw;
        context.OnStringLimit = ScriptLimitBehavior.Throw;
        context.TemplateLoader = null;
        context.StrictVariables = false;
        context.EnableRelaxedMemberAccess = true;
        context.MemberFilter = _ => false;
        return context;
    }

    /// <summary>Text a template marks as HTML already (the result of <c>html.escape</c> or <c>html.raw</c>): written into an HTML body as it is.</summary>
    public sealed record RawHtml(string Value)
    {
        public override string ToString() => Value;
    }

    /// <summary>
    /// Renders an HTML body: what an expression writes (<c>{{ customer.name }}</c>) is HTML-escaped
    /// unless it is <see cref="RawHtml"/>; the template's own text is written as it is. Customer
    /// names and a business app's data cannot add markup or links to a mail sent from the practice's
    /// domain, whether or not the template's author remembered <c>| html.escape</c>.
    /// </summary>
    private sealed class HtmlContext() : TemplateContext(Builtins)
    {
        public override TemplateContext Write(SourceSpan span, object? textAsObject) => textAsObject switch
        {
            null => this,
            RawHtml raw => Write(raw.Value),
            _ => Write(HtmlFunctions.Escape(ObjectToString(textAsObject)) ?? ""),
        };
    }

    // In HTML bodies `html` is the built-in one with three changes: `escape` marks its result as
    // HTML (so templates written with `| html.escape` are not escaped twice), `newline_to_br`
    // escapes the text before adding its <br />, and `raw` writes HTML a business app built itself.
    private static readonly ScriptObject HtmlBodyGlobals = NewHtmlBodyGlobals();

    private static ScriptObject NewHtmlBodyGlobals()
    {
        var html = new ScriptObject();
        foreach (var (name, function) in (ScriptObject)Builtins["html"]!)
        {
            html[name] = function;
        }
        html.Import("escape", new Func<string?, RawHtml>(text => new RawHtml(HtmlFunctions.Escape(text) ?? "")));
        // Escapes first, unless its input is marked as HTML already (`x | html.escape | html.newline_to_br`).
        html.Import("newline_to_br", new Func<TemplateContext, object?, RawHtml>((context, value) =>
            new RawHtml(HtmlFunctions.NewlineToBr(value is RawHtml raw ? raw.Value : HtmlFunctions.Escape(context.ObjectToString(value))) ?? "")));
        html.Import("raw", new Func<string?, RawHtml>(text => new RawHtml(text ?? "")));
        html.IsReadOnly = true;
        var globals = new ScriptObject { ["html"] = html };
        globals.IsReadOnly = true;
        return globals;
    }

    /// <summary>See <see cref="Session"/>. Not thread-safe: one message's texts, one after another.</summary>
    public sealed class RenderSession : IDisposable
    {
        private readonly TemplateRenderer renderer;
        private readonly ScriptObject model;
        private readonly CancellationTokenSource deadline;
        private readonly TemplateContext context;
        private HtmlContext? htmlContext;
        private bool failed;
        private bool disposed;

        private readonly DateTime? localNow;

        internal RenderSession(TemplateRenderer renderer, ScriptObject model, DateTime? localNow)
        {
            this.renderer = renderer;
            this.model = model;
            this.localNow = localNow;
            deadline = new CancellationTokenSource(renderer.timeout, renderer.clock);
            context = spareContext ?? NewContext();
            spareContext = null;
            Prepare(context);
        }

        private void Prepare(TemplateContext prepared)
        {
            prepared.CancellationToken = deadline.Token;
            // regex.* and html.strip run one match to its end between the deadline's checks:
            // Scriban's own limit for a match is 10 s.
            prepared.RegexTimeOut = renderer.timeout;
            prepared.PushCulture(Culture);
            if (localNow is { } now)
            {
                prepared.Tags[LocalNowTag] = now;
            }
            else
            {
                prepared.Tags.Remove(LocalNowTag);
            }
            prepared.PushGlobal(model);
        }

        /// <summary>A text (subject, body, parameter), written as the template renders it; an error names <paramref name="part"/> when given.</summary>
        public string Render(string text, string? part = null) => Render(text, context, part);

        /// <summary>An HTML body: values are HTML-escaped unless marked as HTML (see <see cref="HtmlContext"/>).</summary>
        public string RenderHtml(string text, string? part = null)
        {
            if (htmlContext is null)
            {
                htmlContext = spareHtmlContext ?? Configure(new HtmlContext());
                spareHtmlContext = null;
                htmlContext.PushGlobal(HtmlBodyGlobals);   // beneath the model: template data may shadow `html`, as it may the built-in
                Prepare(htmlContext);
            }
            return Render(text, htmlContext, part);
        }

        private string Render(string text, TemplateContext with, string? part)
        {
            try
            {
                return Render(text, with);
            }
            // Each text's lines and columns start at 1: which text it was says where.
            catch (TemplateException ex) when (part is not null)
            {
                throw new TemplateException($"{part}: {ex.Message}", ex.InnerException ?? ex) { TimedOut = ex.TimedOut };
            }
        }

        private string Render(string text, TemplateContext with)
        {
            var template = renderer.Parse(text);
            try
            {
                // What goes out is what is stored: text that PostgreSQL refuses (a NUL, half an emoji) is cleaned here.
                return StorableText.Of(template.Render(with))!;
            }
            // Scriban reports its cancellation token as a ScriptAbortException ("The operation was cancelled").
            catch (Exception ex) when (ex is ScriptAbortException or OperationCanceledException && deadline.IsCancellationRequested)
            {
                failed = true;
                throw new TemplateException($"rendering took longer than {renderer.timeout.TotalSeconds:0.#} s", ex) { TimedOut = true };
            }
            catch (Exception ex) when (ex is RegexMatchTimeoutException || ex.InnerException is RegexMatchTimeoutException)
            {
                failed = true;
                throw new TemplateException($"rendering took longer than {renderer.timeout.TotalSeconds:0.#} s (a regular expression did not finish)", ex) { TimedOut = true };
            }
            catch (ScriptRuntimeException ex)
            {
                failed = true;
                throw new TemplateException(ex.Message, ex);
            }
            catch
            {
                failed = true;
                throw;
            }
        }

        public void Dispose()
        {
            if (disposed)
            {
                return;
            }
            disposed = true;
            deadline.Dispose();
            if (!failed)
            {
                context.CancellationToken = CancellationToken.None;
                context.Reset();
                spareContext = context;
                if (htmlContext is not null)
                {
                    htmlContext.CancellationToken = CancellationToken.None;
                    htmlContext.Reset();
                    spareHtmlContext = htmlContext;
                }
            }
        }
    }

    /// <summary>The names the model gives its own objects, above the template data's (the API refuses data values under them).</summary>
    public static readonly IReadOnlyList<string> ModelNames = ["customer", "message"];

    /// <summary>The model a template sees: the message's template data at the top level, plus <c>customer</c> and <c>message</c>.</summary>
    public static ScriptObject Model(JsonElement templateData, IReadOnlyDictionary<string, object?> customer, IReadOnlyDictionary<string, object?> message)
    {
        var model = new ScriptObject();
        if (templateData.ValueKind == JsonValueKind.Object)
        {
            foreach (var property in templateData.EnumerateObject())
            {
                model[property.Name] = FromJson(property.Value);
            }
        }
        model["customer"] = FromDictionary(customer);
        model["message"] = FromDictionary(message);
        return model;
    }

    /// <summary>The model's <c>customer</c> object: what a template may say about the recipient.</summary>
    public static Dictionary<string, object?> CustomerFields(Customer customer)
    {
        ArgumentNullException.ThrowIfNull(customer);
        return new()
        {
            ["id"] = customer.Id.ToString(),
            ["external_id"] = customer.ExternalId,
            ["name"] = customer.Name,
            ["email"] = customer.Email,
            ["phone"] = customer.Phone,
            ["whatsapp_number"] = customer.WhatsAppNumber,
            ["preferred_language"] = customer.PreferredLanguage,
            ["time_zone"] = customer.TimeZone,
        };
    }

    /// <summary>The model's <c>message</c> object.</summary>
    /// <remarks><c>created_at</c> is the recipient's wall-clock time in <paramref name="zone"/>, as <c>date.now</c> is.</remarks>
    public static Dictionary<string, object?> MessageFields(long id, MessageType type, Channel channel, DateTimeOffset createdAt, TimeZoneInfo zone) => new()
    {
        ["id"] = id,
        ["type"] = WireName<MessageType>.Of(type),
        ["channel"] = WireName<Channel>.Of(channel),
        ["created_at"] = LocalTime(createdAt, zone),
    };

    /// <summary>An instant as a wall-clock time in <paramref name="zone"/> (what <c>date.now</c> and <c>message.created_at</c> hold).</summary>
    public static DateTime LocalTime(DateTimeOffset instant, TimeZoneInfo zone) =>
        DateTime.SpecifyKind(TimeZoneInfo.ConvertTime(instant, zone).DateTime, DateTimeKind.Unspecified);

    private Template Parse(string text)
    {
        if (cache.TryGetValue(text, out var cached))
        {
            return cached;
        }
        var template = Template.Parse(text);
        if (template.HasErrors)
        {
            throw new TemplateException(Describe(template.Messages));
        }
        if (cache.Count >= CacheLimit)
        {
            cache.Clear();
        }
        cache[text] = template;
        return template;
    }

    /// <summary>
    /// <c>date.parse</c>, except that text it cannot read fails the render (the message fails
    /// saying so) instead of giving 1 January 0001 — a compliance reminder with that date is worse
    /// than none. No text (an optional field left out) is still no date.
    /// </summary>
    private static DateTime? ParseDate(TemplateContext context, string? text, string? pattern = null, string? culture = null)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            return null;
        }
        var parsed = DateTimeFunctions.Parse(context, text, pattern!, culture!);
        if (parsed is null || parsed == default(DateTime))
        {
            var how = pattern is null ? "day first, as 30/11/2026, or as 2026-11-30" : $"with the pattern '{pattern}'";
            throw new ScriptRuntimeException(context.CurrentSpan, $"date.parse cannot read '{text}' as a date ({how})");
        }
        // Text with Z or an offset is an instant, which Scriban gives in the host's time zone: in
        // UTC here, whatever zone the host is set to. Text without one is the date and time it
        // says (Scriban marks it local too, unconverted: it must stay as it is).
        return HasOffset(text) ? DateTime.SpecifyKind(parsed.Value.ToUniversalTime(), DateTimeKind.Utc) : parsed;
    }

    /// <summary>A date text naming its offset from UTC after a time of day: <c>…T20:00:00Z</c>, <c>… 20:00 +05:30</c>, <c>…-0500</c>.</summary>
    internal static bool HasOffset(string text) => OffsetAfterTime().IsMatch(text);

    [GeneratedRegex(@"\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:[zZ]|(?:UTC|GMT)?\s*[+-]\d{2}(?::?\d{2})?)\s*$")]
    private static partial Regex OffsetAfterTime();

    /// <summary><c>date.parse_to_string</c>: reads as <see cref="ParseDate"/> does (unreadable text fails the render), then writes as <c>date.to_string</c>.</summary>
    private static string? ParseDateToString(TemplateContext context, string? text, string? output_pattern = null, string? output_culture = null, string? input_pattern = null, string? input_culture = null)
    {
        var parsed = ParseDate(context, text, input_pattern, input_culture);
        var functions = (DateTimeFunctions)Builtins["date"]!;
        var written = parsed is null ? null
            : functions.ToString(parsed, output_pattern ?? functions.Format, output_culture is null ? context.CurrentCulture : CultureInfo.GetCultureInfo(output_culture));
        // As Scriban's own does: no value longer than the render's limit for one (a pattern made with string.repeat).
        if (written?.Length > context.LimitToString)
        {
            throw new ScriptRuntimeException(context.CurrentSpan, $"date.parse_to_string wrote more than {context.LimitToString} characters");
        }
        return written;
    }

    /// <summary>
    /// The <c>date</c> object, which is also a function (<c>{{ due | date }}</c> parses as
    /// <c>date.parse</c> does): read as <see cref="ParseDate"/> reads.
    /// </summary>
    private sealed class DateFunctions : DateTimeFunctions
    {
        public override object? Invoke(TemplateContext context, ScriptNode? callerContext, ScriptArray arguments, ScriptBlockStatement? blockStatement) =>
            arguments is { Count: 1 } ? ParseDate(context, context.ObjectToString(arguments[0])) : base.Invoke(context, callerContext, arguments, blockStatement);
    }

    private static ScriptObject FrozenBuiltins()
    {
        var builtins = TemplateContext.GetDefaultBuiltinObject();
        var date = new DateFunctions();
        builtins.Remove("date");
        builtins.SetValue("date", date, true);
        // date.now is the recipient's wall-clock time when the session knows it, not the host's.
        date.Remove("now");   // the built-in is read-only: Import would not replace it
        date.Import("now", new Func<TemplateContext, DateTime>(context =>
            context.Tags.TryGetValue(LocalNowTag, out var now) ? (DateTime)now : DateTime.Now));
        date.Remove("parse");
        date.Import("parse", new Func<TemplateContext, string?, string?, string?, DateTime?>(ParseDate));
        date.Remove("parse_to_string");
        date.Import("parse_to_string", new Func<TemplateContext, string?, string?, string?, string?, string?, string?>(ParseDateToString));
        foreach (var value in builtins.Values)
        {
            if (value is ScriptObject functions)
            {
                functions.IsReadOnly = true;
            }
        }
        builtins.IsReadOnly = true;
        return builtins;
    }

    private static string Describe(LogMessageBag messages) =>
        string.Join("; ", messages.Select(m => $"line {m.Span.Start.Line + 1}, column {m.Span.Start.Column + 1}: {m.Message}"));

    private static ScriptObject FromDictionary(IReadOnlyDictionary<string, object?> values)
    {
        var result = new ScriptObject();
        foreach (var (key, value) in values)
        {
            result[key] = value;
        }
        return result;
    }

    private static object? FromJson(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.Object => value.EnumerateObject().Aggregate(new ScriptObject(), (o, p) => { o[p.Name] = FromJson(p.Value); return o; }),
        JsonValueKind.Array => new ScriptArray(value.EnumerateArray().Select(FromJson)),
        JsonValueKind.String => value.GetString(),
        // Beyond decimal's range (1e30, 1e-40) a number is a double rather than an error, and
        // beyond a double's (1e309, which jsonb keeps) it is its text.
        JsonValueKind.Number => value.TryGetInt64(out var l) ? l : value.TryGetDecimal(out var m) ? m : value.TryGetDouble(out var d) && double.IsFinite(d) ? d : value.GetRawText(),
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => null,
    };
}
