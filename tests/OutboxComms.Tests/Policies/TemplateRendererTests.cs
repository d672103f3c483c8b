using System.Text.Json;
using OutboxComms.Core.Templates;

namespace OutboxComms.Tests.Policies;

public sealed class TemplateRendererTests
{
    private readonly TemplateRenderer renderer = new(TimeSpan.FromSeconds(1));

    private static Scriban.Runtime.ScriptObject Model(string json) =>
        TemplateRenderer.Model(JsonDocument.Parse(json).RootElement, new Dictionary<string, object?> { ["name"] = "Asha Rao" }, new Dictionary<string, object?> { ["type"] = "INVOICE" });

    [Fact]
    public void Renders_template_data_and_customer_fields()
    {
        var text = renderer.Render("Dear {{ customer.name }}, invoice {{ invoice.number }} for ₹{{ invoice.amount }} ({{ items | array.size }} items).",
            Model("""{"invoice": {"number": "INV-1042", "amount": 11800}, "items": [1, 2, 3]}"""));

        Assert.Equal("Dear Asha Rao, invoice INV-1042 for ₹11800 (3 items).", text);
    }

    [Fact]
    public void A_long_text_renders_whole_and_one_past_the_limit_fails_instead_of_being_cut_short()
    {
        // 500 rows of 300 characters: 150,000, past the 100,000 Scriban once cut texts at, with an ellipsis.
        var row = new string('x', 299);
        var statement = renderer.Render("{{ for i in 1..500 }}" + row + "\n{{ end }}<footer>", Model("{}"));
        Assert.Equal(500 * 300 + "<footer>".Length, statement.Length);
        Assert.EndsWith("<footer>", statement, StringComparison.Ordinal);

        var tooLong = Assert.Throws<TemplateException>(() => renderer.Render("{{ for i in 1..1000 }}{{ row }}{{ end }}", Model($$"""{"row": "{{new string('y', 1001)}}"}""")));
        Assert.Contains("limit", tooLong.Message, StringComparison.OrdinalIgnoreCase);
        var hugeValue = Assert.Throws<TemplateException>(() => renderer.Render("{{ note }}", Model($$"""{"note": "{{new string('z', TemplateRenderer.OutputLimit + 1)}}"}""")));
        Assert.Contains("limit", hugeValue.Message, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void An_html_body_escapes_what_expressions_write_unless_marked_as_html_and_other_texts_are_written_as_rendered()
    {
        var model = TemplateRenderer.Model(
            JsonDocument.Parse("""{"note": "<a href=https://evil.example/pay>Pay here</a>", "address": "12 MG Road\nBengaluru", "table": "<table><tr><td>1</td></tr></table>", "safe": "R&D <dept>"}""").RootElement,
            new Dictionary<string, object?> { ["name"] = "Mehta <Textiles> & Sons" }, new Dictionary<string, object?>());
        using var session = renderer.Session(model);

        Assert.Equal("<p>Dear Mehta &lt;Textiles&gt; &amp; Sons,</p><p>&lt;a href=https://evil.example/pay&gt;Pay here&lt;/a&gt;</p>",
            session.RenderHtml("<p>Dear {{ customer.name }},</p><p>{{ note }}</p>"));
        // Written for the old behaviour, with html.escape: escaped once, not twice.
        Assert.Equal("<b>R&amp;D &lt;dept&gt;</b>", session.RenderHtml("<b>{{ safe | html.escape }}</b>"));
        Assert.Equal("12 MG Road<br />\nBengaluru", session.RenderHtml("{{ address | html.newline_to_br }}"));
        Assert.Equal("R&amp;D &lt;dept&gt;", session.RenderHtml("{{ safe | html.escape | html.newline_to_br }}"));   // escaped once
        // HTML the business app built itself, marked as such.
        Assert.Equal("<table><tr><td>1</td></tr></table>", session.RenderHtml("{{ table | html.raw }}"));
        // The subject and the plain-text body are not HTML.
        Assert.Equal("Dear Mehta <Textiles> & Sons", session.Render("Dear {{ customer.name }}"));
    }

    [Fact]
    public void Dates_read_day_first_and_amounts_group_in_lakhs_as_in_india()
    {
        var model = Model("""{"due": "30/11/2026", "agm": "05/11/2026", "iso": "2026-09-30", "fee": 1180000}""");

        Assert.Equal("30 November 2026, 05 November 2026, 30 Sept 2026",
            renderer.Render("{{ due | date.parse | date.to_string '%d %B %Y' }}, {{ agm | date.parse | date.to_string '%d %B %Y' }}, {{ iso | date.parse }}", model));
        Assert.Equal("₹11,80,000 / 11,80,000.00", renderer.Render("₹{{ fee | math.format 'N0' }} / {{ fee | object.format 'N2' }}", model));
        // A template may still ask for another culture.
        Assert.Equal("1,180,000", renderer.Render("{{ fee | math.format 'N0' 'en-US' }}", model));
        Assert.Equal("30 Nov 2026", renderer.Render("{{ date.parse '11/30/2026' culture: 'en-US' }}", model));
        Assert.Equal("30 Nov 2026", renderer.Render("{{ date.parse '2026--11--30' '%Y--%m--%d' }}", model));
    }

    [Fact]
    public void A_date_parse_cannot_read_fails_the_render_instead_of_giving_year_one()
    {
        var model = Model("""{"us": "11/30/2026", "none": null, "empty": ""}""");

        var failure = Assert.Throws<TemplateException>(() => renderer.Render("Due {{ us | date.parse | date.to_string '%d %B %Y' }}", model));
        Assert.Contains("date.parse cannot read '11/30/2026' as a date (day first, as 30/11/2026, or as 2026-11-30)", failure.Message, StringComparison.Ordinal);
        // An optional date left out is no date, as before.
        Assert.Equal("Due: .", renderer.Render("Due: {{ none | date.parse }}{{ empty | date.parse }}.", model));
    }

    [Fact]
    public void Date_now_and_message_created_at_are_the_recipients_wall_clock_time()
    {
        var kolkata = TimeZoneInfo.FindSystemTimeZoneById("Asia/Kolkata");
        var createdAt = new DateTimeOffset(2026, 11, 30, 18, 45, 0, TimeSpan.Zero);   // 00:15 IST on 1 December
        var model = TemplateRenderer.Model(default, new Dictionary<string, object?>(), TemplateRenderer.MessageFields(7, Core.Messages.MessageType.Invoice, Core.Messages.Channel.Email, createdAt, kolkata));
        using var session = renderer.Session(model, TemplateRenderer.LocalTime(createdAt.AddMinutes(5), kolkata));

        Assert.Equal("01/12/2026 00:15, now 01/12/2026 00:20",
            session.Render("{{ message.created_at | date.to_string '%d/%m/%Y %H:%M' }}, now {{ date.now | date.to_string '%d/%m/%Y %H:%M' }}"));
    }

    [Fact]
    public void Built_in_functions_are_shared_and_cannot_be_redefined_by_a_template()
    {
        Assert.Throws<TemplateException>(() => renderer.Render("{{ string.upcase = 1 }}", Model("{}")));
        Assert.Throws<TemplateException>(() => renderer.Render("{{ date.format = '%Y' }}", Model("{}")));

        Assert.Equal("ASHA RAO", renderer.Render("{{ customer.name | string.upcase }}", Model("{}")));
        Assert.Equal("&lt;b&gt;", renderer.Render("{{ '<b>' | html.escape }}", Model("{}")));
    }

    [Fact]
    public async Task Concurrent_renders_share_the_built_ins_safely()
    {
        var renders = await Task.WhenAll(Enumerable.Range(0, 64).Select(i => Task.Run(
            () => renderer.Render("{{ for x in items }}{{ x | string.upcase }}{{ end }}-{{ n | math.format '000' }}", Model($$"""{"items": ["a", "b"], "n": {{i}}}""")),
            TestContext.Current.CancellationToken)));

        Assert.Equal(Enumerable.Range(0, 64).Select(i => $"AB-{i:000}"), renders);
    }

    [Fact]
    public void A_session_renders_each_text_on_its_own_against_one_model()
    {
        using var session = renderer.Session(Model("""{"invoice": {"number": "INV-7"}, "lines": ["a", "b"]}"""));

        Assert.Equal("Invoice INV-7", session.Render("Invoice {{ invoice.number }}"));
        Assert.Equal("Dear Asha Rao: a,b", session.Render("Dear {{ customer.name }}: {{ lines | array.join ',' }}"));
        Assert.Equal("INV-7", session.Render("{{ invoice.number }}"));
    }

    [Fact]
    public void Nothing_a_template_defines_survives_into_the_next_session()
    {
        using (var first = renderer.Session(Model("""{"invoice": {"number": "INV-1"}}""")))
        {
            Assert.Equal("", first.Render("{{ secret = 'company A data' }}{{ func leak; ret 'leaked'; end }}"));
            Assert.Equal("company A data leaked", first.Render("{{ secret }} {{ leak }}"));
        }

        using var second = renderer.Session(Model("{}"));
        Assert.Equal("[][] true", second.Render("[{{ secret }}][{{ leak }}] {{ invoice == null }}"));
        Assert.Equal("ASHA RAO", second.Render("{{ customer.name | string.upcase }}"));
    }

    [Fact]
    public void A_session_after_a_failed_render_starts_clean()
    {
        using (var failing = renderer.Session(Model("{}")))
        {
            Assert.Throws<TemplateException>(() => failing.Render("{{ x = 'left over' }}{{ while true }}x{{ end }}"));
        }

        using var next = renderer.Session(Model("""{"n": 2}"""));
        Assert.Equal("[] 3 ab", next.Render("[{{ x }}] {{ n + 1 }} {{ for s in ['a', 'b'] }}{{ s }}{{ end }}"));
    }

    [Fact]
    public void A_sessions_time_limit_covers_all_of_its_renders()
    {
        var clock = new Microsoft.Extensions.Time.Testing.FakeTimeProvider();
        var slow = new TemplateRenderer(TimeSpan.FromMilliseconds(200), clock);
        using var session = slow.Session(Model("{}"));
        Assert.Equal("12", session.Render("{{ for i in 1..2 }}{{ i }}{{ end }}"));
        clock.Advance(TimeSpan.FromMilliseconds(300));

        var error = Assert.Throws<TemplateException>(() => session.Render("{{ for i in 1..10 }}{{ i }}{{ end }}"));

        Assert.Contains("longer than", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_regular_expression_is_held_to_the_render_time_limit()
    {
        var quick = new TemplateRenderer(TimeSpan.FromMilliseconds(300));
        var model = Model($$"""{"statement": "{{new string('a', 40)}}!"}""");

        // (a+)+b backtracks for ever over forty a's: Scriban's own limit for a match is 10 s, a thread held all that time.
        var error = Assert.Throws<TemplateException>(() => quick.Render("""{{ statement | regex.replace "(a+)+b" "" }}""", model));

        Assert.Equal("rendering took longer than 0.3 s (a regular expression did not finish)", error.Message);
        var timedOut = error.InnerException as System.Text.RegularExpressions.RegexMatchTimeoutException
            ?? Assert.IsType<System.Text.RegularExpressions.RegexMatchTimeoutException>(error.InnerException?.InnerException);
        Assert.Equal(TimeSpan.FromMilliseconds(300), timedOut.MatchTimeout);
    }

    [Fact]
    public void Nested_loops_of_a_long_statement_render_and_an_endless_one_still_stops()
    {
        var clients = string.Join(",", Enumerable.Range(1, 50).Select(c => $$"""{"name":"Client {{c}}","filings":[{{string.Join(",", Enumerable.Range(1, 25).Select(f => $"\"F{f}\""))}}]}"""));
        var model = Model($$"""{"clients":[{{clients}}]}""");

        var text = renderer.Render("{{ for c in clients }}{{ for f in c.filings }}.{{ end }}{{ end }}|{{ clients | array.map 'name' | array.join ',' | string.size }}", model);

        Assert.Equal(new string('.', 1250) + "|" + string.Join(",", Enumerable.Range(1, 50).Select(c => $"Client {c}")).Length, text);
        Assert.Contains("loop", Assert.Throws<TemplateException>(() => renderer.Render("{{ for i in 1..1000000 }}{{ end }}", model)).Message, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void Date_parse_to_string_and_date_as_a_function_read_dates_as_date_parse_does()
    {
        var model = Model("""{"due": "30/11/2026", "us": "11/30/2026", "none": null}""");

        Assert.Equal("30 November 2026 / 30 Nov 2026 / 30 Nov 2026", renderer.Render("{{ due | date.parse_to_string '%d %B %Y' }} / {{ due | date.parse_to_string }} / {{ due | date }}", model));
        Assert.Equal("Nov 30, 26", renderer.Render("""{{ us | date.parse_to_string "%b %d, %y" input_pattern: "%m/%d/%Y" }}""", model));
        Assert.Equal("[]", renderer.Render("[{{ none | date.parse_to_string '%d' }}{{ none | date }}]", model));
        foreach (var text in new[] { "{{ us | date.parse_to_string '%d %B %Y' }}", "{{ us | date }}" })
        {
            Assert.Contains("cannot read '11/30/2026' as a date", Assert.Throws<TemplateException>(() => renderer.Render(text, model)).Message, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("2026-11-30T20:00:00Z", true)]
    [InlineData("2026-11-30T20:00:00.123z", true)]
    [InlineData("30/11/2026 20:00 +05:30", true)]
    [InlineData("2026-11-30T20:00:00-0500", true)]
    [InlineData("2026-11-30 20:00 GMT+05:30", true)]
    [InlineData("30/11/2026", false)]
    [InlineData("2026-11-30", false)]
    [InlineData("30/11/2026 20:00", false)]
    [InlineData("30-11-2026", false)]
    public void Only_a_date_text_naming_its_offset_after_a_time_is_an_instant_read_as_utc(string text, bool instant)
    {
        // Scriban marks both kinds as the host's local time; converting a plain date as well would
        // move "30/11/2026" to the 29th on a host whose clock is on Indian time.
        Assert.Equal(instant, TemplateRenderer.HasOffset(text));
    }

    [Fact]
    public void A_failing_text_of_a_session_is_named_when_the_caller_names_it()
    {
        using var session = renderer.Session(Model("{}"));

        var error = Assert.Throws<TemplateException>(() => session.Render("Due {{ \"11/30/2026\" | date.parse }}", "body"));

        Assert.StartsWith("body: ", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Syntax_errors_name_line_and_column()
    {
        var error = TemplateRenderer.Validate("Hello\n{{ if }}");

        Assert.NotNull(error);
        Assert.Contains("line 2", error, StringComparison.Ordinal);
        Assert.Contains("column", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Endless_loops_are_stopped()
    {
        var error = Assert.Throws<TemplateException>(() => renderer.Render("{{ while true }}x{{ end }}", Model("{}")));

        Assert.Contains("loop", error.Message, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void Deep_recursion_is_stopped()
    {
        var error = Assert.Throws<TemplateException>(() => renderer.Render("{{ func f\n f\n end\n f }}", Model("{}")));

        Assert.Contains("recursive", error.Message, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void Includes_have_no_loader_so_no_file_is_read()
    {
        Assert.Throws<TemplateException>(() => renderer.Render("{{ include '/etc/passwd' }}", Model("{}")));
    }

    [Fact]
    public void No_dotnet_member_is_reachable_from_a_template()
    {
        var text = renderer.Render("[{{ customer.name.GetType }}][{{ invoice.GetType }}][{{ customer.name.Length }}]", Model("""{"invoice": {"number": "1"}}"""));

        Assert.Equal("[][][]", text);
    }
}
