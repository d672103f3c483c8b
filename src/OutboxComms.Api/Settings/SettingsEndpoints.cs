using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using OutboxComms.Api.Auth;
using OutboxComms.Api.Common;
using OutboxComms.Core.Companies;
using OutboxComms.Core.Data;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Policies;
using OutboxComms.Core.Providers;
using OutboxComms.Core.Security;

namespace OutboxComms.Api.Settings;

/// <summary>
/// A practice's provider setup. Secrets go in, never out: they are encrypted on write
/// (AES-256-GCM) and shown masked. Omitting a secret keeps the stored one; an empty string clears it.
/// Only a company's own key may read or change them, never the admin key.
/// </summary>
public static partial class SettingsEndpoints
{
    [System.Text.RegularExpressions.GeneratedRegex("^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$")]
    private static partial System.Text.RegularExpressions.Regex AwsRegion();

    [System.Text.RegularExpressions.GeneratedRegex("^arn:aws(-cn|-us-gov)?:sns:[a-z]{2}(-[a-z]+)+-[0-9]{1,2}:[0-9]{12}:[A-Za-z0-9_-]{1,256}$")]
    private static partial System.Text.RegularExpressions.Regex SnsTopicArn();

    public sealed record EmailSettingsRequest(
        EmailProvider? Provider, bool? Enabled, string? Host, int? Port, SmtpSecurity? Security, string? Username, string? Password,
        string? ApiKey, string? ApiUser, string? Region, string? FromEmail, string? FromName, string? ReplyTo, string? WebhookSecret,
        string? BaseUrl, decimal? Cost, string? CostCurrency);

    public sealed record WhatsAppSettingsRequest(
        WhatsAppProvider? Provider, bool? Enabled, string? ApiKey, string? PhoneNumberId, string? AccountSid, string? FromNumber,
        string? WebhookSecret, string? VerifyToken, string? BaseUrl, decimal? Cost, string? CostCurrency);

    public sealed record SmsSettingsRequest(
        SmsProvider? Provider, bool? Enabled, string? ApiKey, string? AccountSid, string? FromNumber, string? DltEntityId, string? DltTemplateId,
        string? BaseUrl, decimal? Cost, string? CostCurrency, string? WebhookSecret = null);

    public sealed record EmailSettingsView(
        EmailProvider? Provider, bool Enabled, string? Host, int? Port, SmtpSecurity Security, string? Username, string? Password,
        string? ApiKey, string? ApiUser, string? Region, string? FromEmail, string? FromName, string? ReplyTo, string? WebhookSecret, string? BaseUrl, decimal? Cost);

    public sealed record WhatsAppSettingsView(
        WhatsAppProvider? Provider, bool Enabled, string? ApiKey, string? PhoneNumberId, string? AccountSid, string? FromNumber,
        string? WebhookSecret, string? VerifyToken, string? BaseUrl, decimal? Cost);

    public sealed record SmsSettingsView(
        SmsProvider? Provider, bool Enabled, string? ApiKey, string? AccountSid, string? FromNumber, string? DltEntityId, string? DltTemplateId, string? BaseUrl, decimal? Cost,
        string? WebhookSecret);

    public sealed record SettingsView(EmailSettingsView Email, WhatsAppSettingsView WhatsApp, SmsSettingsView Sms, string CostCurrency, DateTimeOffset UpdatedAt, RetentionSettings Retention);

    /// <summary>
    /// How long the personal content of a settled message is kept: its subject, body, template data,
    /// error texts, the producer's metadata and its files. After that many days the worker clears
    /// them (the row stays, with its status, times, provider and cost). null keeps them for ever.
    /// </summary>
    public sealed record RetentionSettings(int? MessageContentDays);

    /// <summary>The fewest days of <see cref="RetentionSettings.MessageContentDays"/>: late delivery reports, and a week to replay a failure.</summary>
    public const int MinimumContentDays = 7;

    public const int MaximumContentDays = 36500;

    public sealed record ConnectionTestResponse(bool Ok, string Detail);

    public static IEndpointRouteBuilder MapSettings(this IEndpointRouteBuilder endpoints)
    {
        var group = endpoints.MapGroup("/v1/settings").WithTags("Settings")
            .RequireAuthorization(AuthExtensions.CompanyPolicy).RequireRateLimiting(AuthExtensions.PerCompanyRateLimit)
            .WithMetadata(BodySizeLimit.Small);
        group.MapGet("/", Get);
        group.MapPut("/email", PutEmail);
        group.MapPut("/whatsapp", PutWhatsApp);
        group.MapPut("/sms", PutSms);
        group.MapPut("/retention", PutRetention);
        group.MapPost("/{channel}/test", Test);
        return endpoints;
    }

    internal static async Task<Ok<SettingsView>> Get(Tenant tenant, OutboxDbContext db, SecretProtector secrets, CancellationToken cancellationToken) =>
        TypedResults.Ok(View(await LoadAsync(db, tenant, cancellationToken), secrets));

    internal static async Task<Results<Ok<SettingsView>, ValidationProblem>> PutEmail(
        EmailSettingsRequest request, Tenant tenant, OutboxDbContext db, SecretProtector secrets, ProviderRegistry providers, TimeProvider time,
        IOptions<ProviderNetworkOptions> network, CancellationToken cancellationToken)
    {
        var settings = await LoadForChangeAsync(db, tenant, cancellationToken);
        var validation = new Validation();
        Common(validation, request.Enabled, request.Provider is { } p ? WireName<EmailProvider>.Of(p) : null, network.Value, Channel.Email, providers, request.BaseUrl, request.Cost, request.CostCurrency, settings);
        validation.Storable(("host", request.Host), ("username", request.Username), ("apiUser", request.ApiUser), ("region", request.Region),
            ("fromEmail", request.FromEmail), ("fromName", request.FromName), ("replyTo", request.ReplyTo), ("baseUrl", request.BaseUrl));
        var secretOf = Secrets(secrets, settings);
        var password = secretOf(request.Password, settings.SmtpPasswordEncrypted, nameof(CompanySettings.SmtpPasswordEncrypted));
        var apiKey = secretOf(request.ApiKey, settings.EmailApiKeyEncrypted, nameof(CompanySettings.EmailApiKeyEncrypted));
        var moved = settings.EmailProvider != request.Provider || settings.SmtpHost != request.Host || settings.SmtpPort != request.Port
            || (settings.SmtpSecurity != (request.Security ?? SmtpSecurity.StartTls) && settings.EmailProvider == EmailProvider.Smtp) || settings.SmtpUsername != request.Username
            || settings.EmailBaseUrl != request.BaseUrl || settings.EmailRegion != request.Region || settings.EmailApiUser != request.ApiUser;
        const string Destination = "provider, host, port, security, username, baseUrl, region or apiUser";
        // Only the secret the chosen provider will send: SMTP's password, an API provider's key.
        KeptOnlyWhereEntered(validation, "password", request.Password, settings.SmtpPasswordEncrypted, moved && request.Provider == EmailProvider.Smtp, Destination);
        KeptOnlyWhereEntered(validation, "apiKey", request.ApiKey, settings.EmailApiKeyEncrypted, moved && request.Provider is not (null or EmailProvider.Smtp), Destination);
        switch (request.Provider)
        {
            case EmailProvider.Smtp:
                validation.Require("host", request.Host)
                    .When(request.Host is { } host && Internal(host.Trim(), network.Value), "host",
                        $"host names an internal address, which a company's SMTP server may not use ({ProviderNetworkOptions.Section}:{nameof(ProviderNetworkOptions.AllowPrivateNetworks)}).")
                    .When(request.Username is not null && password.Value is null, "password", "password is required when a username is set.");
                break;
            case EmailProvider.SendGrid or EmailProvider.Resend:
                validation.When(apiKey.Value is null, "apiKey", "apiKey is required for this provider.");
                break;
            case EmailProvider.Mailgun:
                validation.When(apiKey.Value is null, "apiKey", "apiKey is required for Mailgun.").Require("apiUser", request.ApiUser);
                break;
            case EmailProvider.AwsSes:
                validation.When(apiKey.Value is null, "apiKey", "apiKey (the secret access key) is required for AWS SES.")
                    .Require("apiUser", request.ApiUser).Require("region", request.Region);
                // The region becomes part of the endpoint's host name (email.{region}.amazonaws.com).
                validation.When(request.Region is { Length: > 0 } region && !AwsRegion().IsMatch(region), "region",
                    "region must be an AWS region code such as ap-south-1.");
                // Bounces and deliveries arrive through the company's SNS topic (AwsSesWebhook).
                validation.When(request.WebhookSecret is { Length: > 0 } topic && !SnsTopicArn().IsMatch(topic), "webhookSecret",
                    "webhookSecret for AWS SES is the ARN of the SNS topic its notifications go to, e.g. arn:aws:sns:ap-south-1:123456789012:ses-notifications.");
                break;
        }
        if (request.Provider is not null)
        {
            validation.When(!ContactAddresses.TryNormaliseEmail(request.FromEmail, out _), "fromEmail", "fromEmail must be a valid email address.");
        }
        // Stored whatever the provider (it is kept for a switch back to SMTP), so checked whatever the provider.
        validation.When(request.Port is < 1 or > 65535, "port", "port is between 1 and 65535.");
        validation.When(request.ReplyTo is not null && !ContactAddresses.TryNormaliseEmail(request.ReplyTo, out _), "replyTo", "replyTo must be a valid email address.");
        if (!validation.IsValid)
        {
            return validation.Problem();
        }

        settings.EmailProvider = request.Provider;
        settings.EmailEnabled = request.Enabled!.Value;
        settings.SmtpHost = request.Host;
        settings.SmtpPort = request.Port;
        settings.SmtpSecurity = request.Security ?? SmtpSecurity.StartTls;
        settings.SmtpUsername = request.Username;
        settings.SmtpPasswordEncrypted = password.Stored;
        settings.EmailApiKeyEncrypted = apiKey.Stored;
        settings.EmailApiUser = request.ApiUser;
        settings.EmailRegion = request.Region;
        settings.FromEmail = request.FromEmail?.Trim();
        settings.FromName = request.FromName;
        settings.ReplyToEmail = request.ReplyTo;
        settings.EmailWebhookSecretEncrypted = secretOf(request.WebhookSecret, settings.EmailWebhookSecretEncrypted, nameof(CompanySettings.EmailWebhookSecretEncrypted)).Stored;
        settings.EmailBaseUrl = request.BaseUrl;
        settings.EmailCost = request.Cost;
        settings.CostCurrency = request.CostCurrency ?? settings.CostCurrency;
        return await SaveAsync(db, settings, secrets, time, cancellationToken);
    }

    internal static async Task<Results<Ok<SettingsView>, ValidationProblem>> PutWhatsApp(
        WhatsAppSettingsRequest request, Tenant tenant, OutboxDbContext db, SecretProtector secrets, ProviderRegistry providers, TimeProvider time,
        IOptions<ProviderNetworkOptions> network, CancellationToken cancellationToken)
    {
        var settings = await LoadForChangeAsync(db, tenant, cancellationToken);
        var validation = new Validation();
        Common(validation, request.Enabled, request.Provider is { } p ? WireName<WhatsAppProvider>.Of(p) : null, network.Value, Channel.WhatsApp, providers, request.BaseUrl, request.Cost, request.CostCurrency, settings);
        validation.Storable(("phoneNumberId", request.PhoneNumberId), ("accountSid", request.AccountSid), ("fromNumber", request.FromNumber), ("baseUrl", request.BaseUrl));
        var secretOf = Secrets(secrets, settings);
        var apiKey = secretOf(request.ApiKey, settings.WhatsAppApiKeyEncrypted, nameof(CompanySettings.WhatsAppApiKeyEncrypted));
        KeptOnlyWhereEntered(validation, "apiKey", request.ApiKey, settings.WhatsAppApiKeyEncrypted, request.Provider is not null
            && (settings.WhatsAppProvider != request.Provider || settings.WhatsAppBaseUrl != request.BaseUrl || settings.WhatsAppPhoneId != request.PhoneNumberId
            || settings.WhatsAppAccountSid != request.AccountSid), "provider, baseUrl, phoneNumberId or accountSid");
        if (request.Provider is not null)
        {
            validation.When(apiKey.Value is null, "apiKey", "apiKey (access token or auth token) is required.");
        }
        switch (request.Provider)
        {
            case WhatsAppProvider.WhatsAppBusinessApi:
                // It becomes a segment of the request's path: Meta's ids are digits.
                validation.Require("phoneNumberId", request.PhoneNumberId)
                    .When(request.PhoneNumberId is { Length: > 0 } id && !id.All(char.IsAsciiDigit), "phoneNumberId",
                        "phoneNumberId is the Cloud API's phone number id, digits only (WhatsApp Manager → API Setup), e.g. 106540352242922.");
                break;
            case WhatsAppProvider.Twilio:
                validation.When(request.AccountSid is null || !request.AccountSid.StartsWith("AC", StringComparison.Ordinal), "accountSid", "accountSid is required for Twilio and starts with 'AC'.")
                    .When(!ContactAddresses.TryNormalisePhone(request.FromNumber, out _), "fromNumber", "fromNumber must be the WhatsApp-enabled number in E.164, e.g. +14155238886.");
                break;
            case WhatsAppProvider.MessageBird:
                validation.Require("phoneNumberId", request.PhoneNumberId);
                break;
            case WhatsAppProvider.Gupshup:
                validation.Require("phoneNumberId", request.PhoneNumberId)
                    .When(!ContactAddresses.TryNormalisePhone(request.FromNumber, out _), "fromNumber", "fromNumber must be the business number in E.164.");
                break;
        }
        if (!validation.IsValid)
        {
            return validation.Problem();
        }

        settings.WhatsAppProvider = request.Provider;
        settings.WhatsAppEnabled = request.Enabled!.Value;
        settings.WhatsAppApiKeyEncrypted = apiKey.Stored;
        settings.WhatsAppPhoneId = request.PhoneNumberId;
        settings.WhatsAppAccountSid = request.AccountSid;
        settings.WhatsAppFromNumber = ContactAddresses.TryNormalisePhone(request.FromNumber, out var from) ? from : request.FromNumber;
        settings.WhatsAppWebhookSecretEncrypted = secretOf(request.WebhookSecret, settings.WhatsAppWebhookSecretEncrypted, nameof(CompanySettings.WhatsAppWebhookSecretEncrypted)).Stored;
        settings.WhatsAppVerifyTokenEncrypted = secretOf(request.VerifyToken, settings.WhatsAppVerifyTokenEncrypted, nameof(CompanySettings.WhatsAppVerifyTokenEncrypted)).Stored;
        settings.WhatsAppBaseUrl = request.BaseUrl;
        settings.WhatsAppCost = request.Cost;
        settings.CostCurrency = request.CostCurrency ?? settings.CostCurrency;
        return await SaveAsync(db, settings, secrets, time, cancellationToken);
    }

    /// <summary>
    /// Sets (or, with null, ends) the company's content retention. Shortening it clears more at the
    /// worker's next hourly pass; what was cleared stays cleared.
    /// </summary>
    internal static async Task<Results<Ok<SettingsView>, ValidationProblem>> PutRetention(
        RetentionSettings request, Tenant tenant, OutboxDbContext db, SecretProtector secrets, TimeProvider time, CancellationToken cancellationToken)
    {
        var validation = new Validation().When(request.MessageContentDays is < MinimumContentDays or > MaximumContentDays, "messageContentDays",
            $"messageContentDays is between {MinimumContentDays} and {MaximumContentDays} days, or null to keep message content for ever.");
        if (!validation.IsValid)
        {
            return validation.Problem();
        }
        var settings = await LoadForChangeAsync(db, tenant, cancellationToken);
        settings.ContentRetentionDays = request.MessageContentDays;
        return await SaveAsync(db, settings, secrets, time, cancellationToken);
    }

    internal static async Task<Results<Ok<SettingsView>, ValidationProblem>> PutSms(
        SmsSettingsRequest request, Tenant tenant, OutboxDbContext db, SecretProtector secrets, ProviderRegistry providers, TimeProvider time,
        IOptions<ProviderNetworkOptions> network, CancellationToken cancellationToken)
    {
        var settings = await LoadForChangeAsync(db, tenant, cancellationToken);
        var validation = new Validation();
        Common(validation, request.Enabled, request.Provider is { } p ? WireName<SmsProvider>.Of(p) : null, network.Value, Channel.Sms, providers, request.BaseUrl, request.Cost, request.CostCurrency, settings);
        validation.Storable(("accountSid", request.AccountSid), ("fromNumber", request.FromNumber), ("dltEntityId", request.DltEntityId),
            ("dltTemplateId", request.DltTemplateId), ("baseUrl", request.BaseUrl));
        var apiKey = Secrets(secrets, settings)(request.ApiKey, settings.SmsApiKeyEncrypted, nameof(CompanySettings.SmsApiKeyEncrypted));
        KeptOnlyWhereEntered(validation, "apiKey", request.ApiKey, settings.SmsApiKeyEncrypted, request.Provider is not null
            && (settings.SmsProvider != request.Provider || settings.SmsBaseUrl != request.BaseUrl || settings.SmsAccountSid != request.AccountSid), "provider, baseUrl or accountSid");
        if (request.Provider is not null)
        {
            validation.When(apiKey.Value is null, "apiKey", "apiKey is required.").Require("fromNumber", request.FromNumber);
        }
        validation.When(request.Provider == SmsProvider.Twilio && (request.AccountSid is null || !request.AccountSid.StartsWith("AC", StringComparison.Ordinal)),
            "accountSid", "accountSid is required for Twilio and starts with 'AC'.");
        if (!validation.IsValid)
        {
            return validation.Problem();
        }

        settings.SmsProvider = request.Provider;
        settings.SmsEnabled = request.Enabled!.Value;
        settings.SmsApiKeyEncrypted = apiKey.Stored;
        settings.SmsAccountSid = request.AccountSid;
        settings.SmsFromNumber = request.FromNumber;
        settings.SmsDltEntityId = request.DltEntityId;
        settings.SmsDltTemplateId = request.DltTemplateId;
        settings.SmsWebhookSecretEncrypted = Secrets(secrets, settings)(request.WebhookSecret, settings.SmsWebhookSecretEncrypted, nameof(CompanySettings.SmsWebhookSecretEncrypted)).Stored;
        settings.SmsBaseUrl = request.BaseUrl;
        settings.SmsCost = request.Cost;
        settings.CostCurrency = request.CostCurrency ?? settings.CostCurrency;
        return await SaveAsync(db, settings, secrets, time, cancellationToken);
    }

    /// <summary>Really connects and authenticates with the stored settings, within ten seconds.</summary>
    internal static async Task<Results<Ok<ConnectionTestResponse>, ProblemHttpResult>> Test(
        string channel, Tenant tenant, OutboxDbContext db, SecretProtector secrets, ProviderRegistry providers, CancellationToken cancellationToken)
    {
        if (!WireName<Channel>.TryParse(channel, out var parsed) || parsed is not (Channel.Email or Channel.WhatsApp or Channel.Sms))
        {
            return Problems.NotFound($"Channel '{channel}'");
        }
        var settings = await LoadAsync(db, tenant, cancellationToken);
        // Testing before switching the channel on is the normal setup flow, so "enabled" is not required here.
        var (_, name) = ProviderRegistry.Configured(settings, parsed);
        var provider = name is null ? null : providers.Find(parsed, name);
        if (provider is null)
        {
            return TypedResults.Ok(new ConnectionTestResponse(false, name is null
                ? $"Cannot test: no {WireName<Channel>.Of(parsed)} provider is configured."
                : $"Cannot test: the provider {name} is not available in this build."));
        }
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(10));
        try
        {
            var check = await provider.TestConnectionAsync(ProviderAccount.For(settings, parsed, secrets), timeout.Token);
            return TypedResults.Ok(new ConnectionTestResponse(check.Ok, check.Detail));
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return TypedResults.Ok(new ConnectionTestResponse(false, $"{provider.Name} did not answer within 10 seconds."));
        }
        catch (ProviderSettingsException ex)
        {
            return TypedResults.Ok(new ConnectionTestResponse(false, $"Cannot test: {ex.Message}."));
        }
        catch (System.Security.Cryptography.CryptographicException ex)
        {
            return TypedResults.Ok(new ConnectionTestResponse(false, $"Cannot test: the stored secret cannot be read ({ex.Message})."));
        }
    }

    private static void Common(Validation validation, bool? enabled, string? provider, ProviderNetworkOptions network, Channel channel, ProviderRegistry providers, string? baseUrl, decimal? cost, string? currency,
        CompanySettings settings)
    {
        // The currency is the company's, for every channel's rate card: changed from one channel's
        // settings it would relabel the others' prices (an email cost of 0.25 meant in INR recorded as USD).
        var otherCosts = new[] { (Channel.Email, settings.EmailCost), (Channel.WhatsApp, settings.WhatsAppCost), (Channel.Sms, settings.SmsCost) }
            .Where(c => c.Item1 != channel && c.Item2 is not null).Select(c => WireName<Channel>.Of(c.Item1)).ToList();
        validation.When(currency is not null && currency != settings.CostCurrency && otherCosts.Count > 0, "costCurrency",
            $"costCurrency is the company's, for every channel's cost, and {string.Join(" and ", otherCosts)} costs are set in {settings.CostCurrency}: "
            + $"clear those costs first (or leave costCurrency out), then set them again in {currency}.");
        Uri? target = null;
        // Required: the PUT replaces the channel's settings (secrets aside), and left out it meant
        // false, so a PUT of a new password alone stopped the channel.
        validation.When(enabled is null, "enabled", "enabled is required: true to send through this channel, false to stop it.")
            .When(enabled is true && provider is null, "provider", "provider is required to enable the channel.")
            .When(provider is not null && !providers.IsAvailable(channel, provider), "provider", $"provider {provider} is not available in this build.")
            .When(baseUrl is not null && !(Uri.TryCreate(baseUrl, UriKind.Absolute, out target) && target.Scheme is "https" or "http"), "baseUrl", "baseUrl must be an absolute http(s) URL.")
            .When(target is not null && Internal(target.IdnHost, network), "baseUrl",
                $"baseUrl names an internal address, which providers may not reach ({ProviderNetworkOptions.Section}:{nameof(ProviderNetworkOptions.AllowPrivateNetworks)}).")
            .When(cost is < 0, "cost", "cost cannot be negative.")
            .When(cost is >= 1_000_000, "cost", "cost is a price per message (per SMS for the SMS channel: a long or Unicode text goes as several): below 1,000,000 with at most 6 decimals.")
            .When(cost is { } c && c != decimal.Round(c, 6), "cost", "cost has at most 6 decimals (it would be stored rounded).")
            .When(currency is not null && (currency.Length != 3 || !currency.All(char.IsAsciiLetterUpper)), "costCurrency", "costCurrency is an ISO 4217 code such as INR.");
    }

    /// <summary>
    /// A host that is plainly internal, so the settings are refused at once: localhost, or an
    /// address literal that is not public. A name that resolves to one is refused when dialled.
    /// </summary>
    private static bool Internal(string host, ProviderNetworkOptions network) => !network.AllowPrivateNetworks && PublicAddresses.IsPlainlyInternal(host);

    /// <summary>
    /// A stored secret is sent only where it was entered for. Left out of a request that changes
    /// where the provider calls go (another host, base URL, account, provider), it would be handed
    /// to the new destination, and a connection test would show it to whoever runs that server —
    /// the settings never show a secret, and this keeps it so. Such a change must give it again.
    /// </summary>
    private static void KeptOnlyWhereEntered(Validation validation, string field, string? given, byte[]? stored, bool moved, string destination) =>
        validation.When(given is null && stored is not null && moved, field,
            $"{field} must be given again when {destination} changes: a stored secret is only ever sent where it was entered for.");

    /// <summary>null keeps what is stored, "" clears it, anything else is encrypted.</summary>
    private static Func<string?, byte[]?, string, (byte[]? Stored, object? Value)> Secrets(SecretProtector secrets, CompanySettings settings) => (given, stored, property) => given switch
    {
        null => (stored, stored),
        "" => (null, null),
        _ => (secrets.Protect(given, settings.Slot(property)), given),
    };

    private static async Task<CompanySettings> LoadAsync(OutboxDbContext db, Tenant tenant, CancellationToken cancellationToken)
    {
        var settings = await db.CompanySettings.SingleOrDefaultAsync(s => s.CompanyId == tenant.CompanyId, cancellationToken);
        if (settings is null)
        {
            settings = new CompanySettings { CompanyId = tenant.CompanyId };
            db.CompanySettings.Add(settings);
        }
        return settings;
    }

    /// <summary>
    /// As <see cref="LoadAsync"/>, the row locked until <see cref="SaveAsync"/> commits (or the
    /// request ends, rolling back): a channel's PUT checks the other channels' costs against the
    /// currency it sets, so two PUTs at once (email's cost, SMS's currency) must not both pass on
    /// what each read before the other wrote — the email cost would be relabelled silently.
    /// </summary>
    private static async Task<CompanySettings> LoadForChangeAsync(OutboxDbContext db, Tenant tenant, CancellationToken cancellationToken)
    {
        await db.Database.BeginTransactionAsync(cancellationToken);
        var settings = await db.CompanySettings.FromSql($"SELECT * FROM company_settings WHERE company_id = {tenant.CompanyId} FOR UPDATE")
            .SingleOrDefaultAsync(cancellationToken);
        if (settings is null)
        {
            settings = new CompanySettings { CompanyId = tenant.CompanyId };
            db.CompanySettings.Add(settings);
        }
        return settings;
    }

    private static async Task<Results<Ok<SettingsView>, ValidationProblem>> SaveAsync(OutboxDbContext db, CompanySettings settings, SecretProtector secrets, TimeProvider time, CancellationToken cancellationToken)
    {
        settings.UpdatedAt = time.GetUtcNow();
        await db.SaveChangesAsync(cancellationToken);
        if (db.Database.CurrentTransaction is { } transaction)
        {
            await transaction.CommitAsync(cancellationToken);
        }
        return TypedResults.Ok(View(settings, secrets));
    }

    private static SettingsView View(CompanySettings s, SecretProtector secrets)
    {
        string? Mask(byte[]? encrypted, string property)
        {
            if (encrypted is null)
            {
                return null;
            }
            string clear;
            try
            {
                clear = secrets.Unprotect(encrypted, s.Slot(property));
            }
            catch (System.Security.Cryptography.CryptographicException)
            {
                // Copied from another row by SQL, altered, or under a key no longer configured:
                // the settings still load, and say which secret to enter again.
                return "(cannot be read: enter it again)";
            }
            return clear.Length >= 12 ? "••••" + clear[^4..] : "••••";
        }
        return new SettingsView(
            new EmailSettingsView(s.EmailProvider, s.EmailEnabled, s.SmtpHost, s.SmtpPort, s.SmtpSecurity, s.SmtpUsername, Mask(s.SmtpPasswordEncrypted, nameof(CompanySettings.SmtpPasswordEncrypted)),
                Mask(s.EmailApiKeyEncrypted, nameof(CompanySettings.EmailApiKeyEncrypted)), s.EmailApiUser, s.EmailRegion, s.FromEmail, s.FromName, s.ReplyToEmail, Mask(s.EmailWebhookSecretEncrypted, nameof(CompanySettings.EmailWebhookSecretEncrypted)), s.EmailBaseUrl, s.EmailCost),
            new WhatsAppSettingsView(s.WhatsAppProvider, s.WhatsAppEnabled, Mask(s.WhatsAppApiKeyEncrypted, nameof(CompanySettings.WhatsAppApiKeyEncrypted)), s.WhatsAppPhoneId, s.WhatsAppAccountSid, s.WhatsAppFromNumber,
                Mask(s.WhatsAppWebhookSecretEncrypted, nameof(CompanySettings.WhatsAppWebhookSecretEncrypted)), Mask(s.WhatsAppVerifyTokenEncrypted, nameof(CompanySettings.WhatsAppVerifyTokenEncrypted)), s.WhatsAppBaseUrl, s.WhatsAppCost),
            new SmsSettingsView(s.SmsProvider, s.SmsEnabled, Mask(s.SmsApiKeyEncrypted, nameof(CompanySettings.SmsApiKeyEncrypted)), s.SmsAccountSid, s.SmsFromNumber, s.SmsDltEntityId, s.SmsDltTemplateId, s.SmsBaseUrl, s.SmsCost,
                Mask(s.SmsWebhookSecretEncrypted, nameof(CompanySettings.SmsWebhookSecretEncrypted))),
            s.CostCurrency, s.UpdatedAt, new RetentionSettings(s.ContentRetentionDays));
    }
}
