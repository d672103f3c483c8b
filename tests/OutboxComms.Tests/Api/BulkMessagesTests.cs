using System.Diagnostics;
using System.Net;
using Microsoft.AspNetCore.Http.Metadata;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using OutboxComms.Tests.Infrastructure;
using static OutboxComms.Tests.Api.MessageTestData;

namespace OutboxComms.Tests.Api;

public sealed class BulkMessagesTests(DatabaseFixture db) : ApiTests(db)
{
    [Fact]
    public async Task One_invalid_item_rejects_the_whole_batch_with_errors_naming_each_item()
    {
        var (company, key) = await Api.NewCompanyAsync();
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company);
        using var client = Api.As(key);
        var messages = Enumerable.Range(0, 8)
            .Select(i => (object)new { customerId = customer, type = "INVOICE", channel = "SMS", content = $"Invoice {i}" })
            .ToList();
        messages[3] = new { customerId = customer, type = "INVOICE", channel = "CARRIER_PIGEON", content = "Invoice 3" };
        messages[5] = new { customerId = Guid.NewGuid(), type = "INVOICE", channel = "SMS", content = "Invoice 5" };
        messages[6] = null!;

        var (response, problem) = await client.PostAsync("/v1/messages/bulk", new { messages });

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal(["messages[3].channel", "messages[5].customerId", "messages[6]"], ErrorFields(problem));
        Assert.Equal(0, await CountAsync(Db.DataSource, company));

        // Only database checks fail now: still nothing is inserted.
        messages[3] = new { customerId = customer, type = "INVOICE", channel = "SMS", content = "Invoice 3" };
        messages[6] = new { customerId = customer, type = "INVOICE", channel = "SMS", templateKey = "missing" };
        var (again, againProblem) = await client.PostAsync("/v1/messages/bulk", new { messages });
        Assert.Equal(HttpStatusCode.BadRequest, again.StatusCode);
        Assert.Equal(["messages[5].customerId", "messages[6].templateKey"], ErrorFields(againProblem));
        Assert.Equal(0, await CountAsync(Db.DataSource, company));
        Assert.Equal(0, await TestData.ScalarAsync<long>(Db.DataSource, "SELECT count(*) FROM communication_attachments"));
    }

    [Fact]
    public async Task Ten_thousand_messages_are_accepted_in_one_request_with_ids_in_request_order_and_one_notification()
    {
        var (company, key) = await Api.NewCompanyAsync();
        var customers = new List<Guid>();
        for (var i = 0; i < 20; i++)
        {
            customers.Add(await TestData.CreateCustomerAsync(Db.DataSource, company, externalId: $"CLIENT-{i}"));
        }
        using var client = Api.As(key);
        var messages = Enumerable.Range(0, 10_000).Select(i => i % 2 == 0
            ? (object)new { customerId = customers[i % 20], type = "PAYMENT_REMINDER", channel = "EMAIL", subject = "Payment due", content = $"Reminder {i}" }
            : new { customerExternalId = $"CLIENT-{i % 20}", type = "GENERAL_UPDATE", channel = "WHATSAPP", content = $"Update {i}", metadata = new { batch = "april" } }).ToList();

        await using var listener = await Db.DataSource.OpenConnectionAsync(TestContext.Current.CancellationToken);
        var notifications = 0;
        listener.Notification += (_, _) => Interlocked.Increment(ref notifications);
        await using (var listen = new NpgsqlCommand("LISTEN outbox_pending", listener))
        {
            await listen.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }

        var clock = Stopwatch.StartNew();
        var (response, body) = await client.PostAsync("/v1/messages/bulk", new { messages });
        clock.Stop();

        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        Assert.Equal(10_000, body!["messageCount"]!.GetValue<int>());
        var ids = body["items"]!.AsArray().Select(item => Ids(item).Single()).ToList();
        Assert.Equal(10_000, ids.Count);
        Assert.Equal(ids.Order(), ids);
        Assert.Equal(10_000, await CountAsync(Db.DataSource, company));
        Assert.Equal(5_000, await CountAsync(Db.DataSource, company, "channel = 'WHATSAPP' AND customer_external_id IS NOT NULL AND metadata->>'batch' = 'april'"));
        Assert.Equal("Reminder 9998", await TestData.ScalarAsync<string>(Db.DataSource, "SELECT content FROM communication_logs WHERE id = $1", ids[9998]));
        Assert.Equal(customers[19], await TestData.ScalarAsync<Guid>(Db.DataSource, "SELECT customer_id FROM communication_logs WHERE id = $1", ids[9999]));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"took {clock.Elapsed}");

        // The statement-level trigger: one INSERT, one wake-up for the workers.
        await using (var wait = new NpgsqlCommand("SELECT 1", listener))
        {
            await wait.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }
        await listener.WaitAsync(TimeSpan.FromMilliseconds(500), TestContext.Current.CancellationToken);
        Assert.Equal(1, notifications);
    }

    [Fact]
    public async Task A_bulk_item_is_stored_column_for_column_as_the_same_message_sent_alone()
    {
        // A single message goes in by the checked INSERT (InsertCheckedSql), a bulk request's by the unnest INSERT: every column must come out the same.
        var (company, key) = await Api.NewCompanyAsync();
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company, externalId: "CLIENT-9", whatsApp: "+919876543210");
        await CreateTemplateAsync(Db.DataSource, company, "mgt7-reminder");
        using var client = Api.As(key);
        var notBefore = new DateTimeOffset(2031, 4, 1, 9, 30, 0, TimeSpan.FromHours(5.5));
        var expiresAt = new DateTimeOffset(2031, 4, 30, 18, 0, 0, TimeSpan.FromHours(5.5));
        object[] messages =
        [
            new { customerExternalId = "CLIENT-9", type = "COMPLIANCE_REMINDER", channel = "PREFERRED", templateKey = "mgt7-reminder",
                  data = new { form = "MGT-7", lines = new[] { 1, 2 } }, metadata = new { batch = "april", note = "ü ₹ \"quoted\"" }, maxRetries = 7, notBefore, expiresAt },
            new { customerId = customer, type = "INVOICE", channel = "BOTH", subject = "Invoice INV-7", content = "Dear client,\nyour invoice ₹11,800." },
            new { customerId = customer, type = "GENERAL_UPDATE", channel = "SMS", content = "Office closed on Friday." },
        ];

        var single = new List<long>();
        foreach (var message in messages)
        {
            var (response, body) = await client.PostAsync("/v1/messages", message);
            Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
            single.AddRange(Ids(body));
        }
        var (bulkResponse, bulkBody) = await client.PostAsync("/v1/messages/bulk", new { messages });
        Assert.Equal(HttpStatusCode.Accepted, bulkResponse.StatusCode);
        var bulk = bulkBody!["items"]!.AsArray().SelectMany(Ids).ToList();

        Assert.Equal(4, single.Count);
        Assert.Equal(single.Count, bulk.Count);
        for (var i = 0; i < single.Count; i++)
        {
            // Everything but the id and the request's own clock (created_at, updated_at, and next_attempt_at when no notBefore);
            // split_from, an id, as the position of its pair's first row.
            const string Row = """
                SELECT (to_jsonb(l) - 'id' - 'created_at' - 'updated_at' - 'split_from'
                        || jsonb_build_object('due_at_creation', l.next_attempt_at = l.created_at, 'next_attempt_at', CASE WHEN l.next_attempt_at = l.created_at THEN NULL ELSE l.next_attempt_at END,
                                              'split_from', l.split_from - l.id))::text
                  FROM communication_logs l WHERE id = $1
                """;
            Assert.Equal(await TestData.ScalarAsync<string>(Db.DataSource, Row, single[i]), await TestData.ScalarAsync<string>(Db.DataSource, Row, bulk[i]));
        }
        foreach (var ids in new[] { single, bulk }) // the BOTH invoice's rows are marked with its first row's id, as the worker marks its split
        {
            Assert.Equal([0, ids[1], ids[1], 0], await Task.WhenAll(ids.Select(id =>
                TestData.ScalarAsync<long>(Db.DataSource, "SELECT coalesce(split_from, 0) FROM communication_logs WHERE id = $1", id))));
        }
        Assert.Equal(notBefore, (await Outbox.GetAsync(Db.DataSource, bulk[0])).NextAttemptAt);
        Assert.Equal("MGT-7", await TestData.ScalarAsync<string>(Db.DataSource, "SELECT template_data->>'form' FROM communication_logs WHERE id = $1", bulk[0]));
    }

    [Fact]
    public async Task A_bulk_item_asking_for_both_channels_gets_two_ids_in_its_item()
    {
        var (company, key) = await Api.NewCompanyAsync();
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company, whatsApp: "+919876543210");
        using var client = Api.As(key);

        var (response, body) = await client.PostAsync("/v1/messages/bulk", new
        {
            messages = new object[]
            {
                new { customerId = customer, type = "INVOICE", channel = "SMS", content = "SMS" },
                new { customerId = customer, type = "INVOICE", channel = "BOTH", subject = "Invoice", content = "Both" },
                new { customerId = customer, type = "INVOICE", channel = "EMAIL", subject = "Invoice", content = "Email" },
            },
        });

        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        Assert.Equal(4, body!["messageCount"]!.GetValue<int>());
        var items = body["items"]!.AsArray();
        Assert.Equal([1, 2, 1], items.Select(i => Ids(i).Length));
        Assert.Equal(["EMAIL", "WHATSAPP"], items[1]!["messages"]!.AsArray().Select(m => m!["channel"]!.GetValue<string>()));
        Assert.Equal("Both", (await Outbox.GetAsync(Db.DataSource, Ids(items[1])[1])).Content);
    }

    [Fact]
    public async Task A_bulk_request_holds_one_to_ten_thousand_messages()
    {
        var (company, key) = await Api.NewCompanyAsync();
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company);
        using var client = Api.As(key);
        var item = new { customerId = customer, type = "INVOICE", channel = "SMS", content = "Hi" };

        var (empty, emptyProblem) = await client.PostAsync("/v1/messages/bulk", new { messages = Array.Empty<object>() });
        var (missing, missingProblem) = await client.PostAsync("/v1/messages/bulk", new { });
        var (tooMany, tooManyProblem) = await client.PostAsync("/v1/messages/bulk", new { messages = Enumerable.Repeat(item, 10_001) });

        Assert.All(new[] { empty, missing, tooMany }, r => Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode));
        Assert.All(new[] { emptyProblem, missingProblem, tooManyProblem }, p => Assert.Equal(["messages"], ErrorFields(p)));
        Assert.Equal(0, await CountAsync(Db.DataSource, company));
    }

    [Fact]
    public async Task A_malformed_bulk_item_is_named_by_its_json_path()
    {
        var (_, key) = await Api.NewCompanyAsync();
        using var client = Api.As(key);

        var (response, problem) = await client.SendJsonAsync(HttpMethod.Post, "/v1/messages/bulk",
            """{"messages":[{"type":"INVOICE"},{"type":"INVOICE","notBefore":"next tuesday"}]}""");

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal(["messages[1].notBefore"], ErrorFields(problem));
    }

    [Fact]
    public async Task Sending_endpoints_carry_request_body_limits()
    {
        var endpoints = Api.Services.GetRequiredService<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>()
            .Where(e => e.Metadata.GetMetadata<HttpMethodMetadata>()?.HttpMethods.Contains("POST") == true)
            .ToDictionary(e => e.RoutePattern.RawText!.TrimEnd('/'), e => e.Metadata.GetMetadata<IRequestSizeLimitMetadata>()?.MaxRequestBodySize);

        Assert.Equal(32 * 1024 * 1024, endpoints["/v1/messages"]);
        Assert.Equal(128 * 1024 * 1024, endpoints["/v1/messages/bulk"]);
        Assert.Equal(64 * 1024, endpoints["/v1/messages/replay"]);
    }

    [Fact]
    public async Task A_body_declared_larger_than_the_endpoints_limit_is_refused_with_413()
    {
        var (_, key) = await Api.NewCompanyAsync();
        using var client = Api.As(key);

        var (response, problem) = await client.PostAsync("/v1/messages/replay", new { status = "FAILED", errorContains = new string('x', 70 * 1024) });

        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        Assert.Equal(413, problem!["status"]!.GetValue<int>());
    }
}
