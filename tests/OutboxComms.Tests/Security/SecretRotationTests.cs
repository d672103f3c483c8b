using Microsoft.Extensions.Options;
using OutboxComms.Core.Security;
using OutboxComms.Tests.Infrastructure;

namespace OutboxComms.Tests.Security;

public sealed class SecretRotationTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    private static SecretProtector With(string keys) => new(Options.Create(new EncryptionKeyOptions { Keys = keys }));

    [Fact]
    public async Task Rotation_reencrypts_every_secret_under_the_new_key_and_keeps_its_value()
    {
        var old = With(TestKeys.Encryption);
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        await using (var insert = db.DataSource.CreateCommand(
            "INSERT INTO company_settings (company_id, smtp_password_encrypted, whatsapp_api_key_encrypted, sms_api_key_encrypted) VALUES ($1, $2, $3, NULL)"))
        {
            insert.Parameters.AddWithValue(company);
            insert.Parameters.AddWithValue(old.Protect("smtp-password", TestKeys.Slot(company, "smtp_password_encrypted")));
            insert.Parameters.AddWithValue(old.Protect("whatsapp-token", TestKeys.Slot(company, "whatsapp_api_key_encrypted")));
            await insert.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }
        var rotated = With(TestKeys.RotatedEncryption);

        await using (var context = db.CreateDbContext())
        {
            var result = await new SecretRotation(context, rotated).RotateAsync(TestContext.Current.CancellationToken);
            Assert.True(result.Reencrypted >= 2);
        }
        await using (var context = db.CreateDbContext())
        {
            Assert.Equal(0, (await new SecretRotation(context, rotated).RotateAsync(TestContext.Current.CancellationToken)).Reencrypted);
        }

        var smtp = await TestData.ScalarAsync<byte[]>(db.DataSource, "SELECT smtp_password_encrypted FROM company_settings WHERE company_id = $1", company);
        var whatsApp = await TestData.ScalarAsync<byte[]>(db.DataSource, "SELECT whatsapp_api_key_encrypted FROM company_settings WHERE company_id = $1", company);
        Assert.Equal(("test2", "smtp-password"), (SecretProtector.KeyIdOf(smtp), rotated.Unprotect(smtp, TestKeys.Slot(company, "smtp_password_encrypted"))));
        Assert.Equal(("test2", "whatsapp-token"), (SecretProtector.KeyIdOf(whatsApp), With("test2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=").Unprotect(whatsApp, TestKeys.Slot(company, "whatsapp_api_key_encrypted"))));
    }

    [Fact]
    public async Task A_dry_run_counts_what_rotation_would_reencrypt_and_reports_what_it_cannot_read_changing_nothing()
    {
        var old = With(TestKeys.Encryption);
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        var smtpSecret = old.Protect("smtp-password", TestKeys.Slot(company, "smtp_password_encrypted"));
        // A value copied from another company's row: it cannot be read here.
        var copied = old.Protect("whatsapp-token", TestKeys.Slot(Guid.NewGuid(), "whatsapp_api_key_encrypted"));
        await using (var insert = db.DataSource.CreateCommand(
            "INSERT INTO company_settings (company_id, smtp_password_encrypted, whatsapp_api_key_encrypted) VALUES ($1, $2, $3)"))
        {
            insert.Parameters.AddWithValue(company);
            insert.Parameters.AddWithValue(smtpSecret);
            insert.Parameters.AddWithValue(copied);
            await insert.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }

        SecretRotation.Result result;
        await using (var context = db.CreateDbContext())
        {
            result = await new SecretRotation(context, With(TestKeys.RotatedEncryption)).RotateAsync(dryRun: true, TestContext.Current.CancellationToken);
        }

        Assert.True(result.Reencrypted >= 1);
        Assert.Contains(result.Unreadable, u => u.CompanyId == company && u.Column == "whatsapp_api_key_encrypted");
        Assert.Equal(smtpSecret, await TestData.ScalarAsync<byte[]>(db.DataSource, "SELECT smtp_password_encrypted FROM company_settings WHERE company_id = $1", company));
    }

    [Fact]
    public async Task A_secret_stored_while_rotation_runs_is_kept_not_overwritten_with_the_old_value()
    {
        var ct = TestContext.Current.CancellationToken;
        var old = With(TestKeys.Encryption);
        var rotated = With(TestKeys.RotatedEncryption);
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        await using (var insert = db.DataSource.CreateCommand(
            "INSERT INTO company_settings (company_id, whatsapp_api_key_encrypted) VALUES ($1, $2)"))
        {
            insert.Parameters.AddWithValue(company);
            insert.Parameters.AddWithValue(old.Protect("old-token", TestKeys.Slot(company, "whatsapp_api_key_encrypted")));
            await insert.ExecuteNonQueryAsync(ct);
        }

        // A settings PUT stores a new token (under the new key) and has not committed yet.
        await using var put = await db.DataSource.OpenConnectionAsync(ct);
        await using var putTransaction = await put.BeginTransactionAsync(ct);
        await using (var update = new Npgsql.NpgsqlCommand(
            "UPDATE company_settings SET whatsapp_api_key_encrypted = $2 WHERE company_id = $1", put, putTransaction))
        {
            update.Parameters.AddWithValue(company);
            update.Parameters.AddWithValue(rotated.Protect("new-token", TestKeys.Slot(company, "whatsapp_api_key_encrypted")));
            await update.ExecuteNonQueryAsync(ct);
        }

        await using var context = db.CreateDbContext();
        var rotation = new SecretRotation(context, rotated).RotateAsync(ct);
        // Rotation reaches this company's row and waits on the PUT's row lock.
        while (await TestData.ScalarAsync<long>(db.DataSource,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'") == 0)
        {
            Assert.False(rotation.IsCompleted, "rotation finished without waiting for the uncommitted PUT");
            await Task.Delay(20, ct);
        }
        await putTransaction.CommitAsync(ct);
        await rotation;

        var stored = await TestData.ScalarAsync<byte[]>(db.DataSource, "SELECT whatsapp_api_key_encrypted FROM company_settings WHERE company_id = $1", company);
        Assert.Equal("new-token", rotated.Unprotect(stored, TestKeys.Slot(company, "whatsapp_api_key_encrypted")));
    }

    [Fact]
    public async Task A_secret_that_cannot_be_read_is_reported_with_its_company_and_the_others_are_still_rotated()
    {
        var old = With(TestKeys.Encryption);
        var rotated = With(TestKeys.RotatedEncryption);
        var source = await TestData.CreateCompanyAsync(db.DataSource);
        var copier = await TestData.CreateCompanyAsync(db.DataSource);
        var envelope = old.Protect("company-a-token", TestKeys.Slot(source, "whatsapp_api_key_encrypted"));
        await using (var insert = db.DataSource.CreateCommand(
            "INSERT INTO company_settings (company_id, whatsapp_api_key_encrypted, smtp_password_encrypted) VALUES ($1, $3, NULL), ($2, $3, $4)"))
        {
            insert.Parameters.AddWithValue(source);
            insert.Parameters.AddWithValue(copier);
            insert.Parameters.AddWithValue(envelope);   // copied into the second company's row by SQL
            insert.Parameters.AddWithValue(old.Protect("copier-smtp", TestKeys.Slot(copier, "smtp_password_encrypted")));
            await insert.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }

        await using var context = db.CreateDbContext();
        var result = await new SecretRotation(context, rotated).RotateAsync(TestContext.Current.CancellationToken);

        var (company, property, reason) = Assert.Single(result.Unreadable, u => u.CompanyId == copier || u.CompanyId == source);
        Assert.Equal((copier, "whatsapp_api_key_encrypted"), (company, property));
        Assert.Contains("was not encrypted for this company and setting", reason, StringComparison.Ordinal);
        Assert.Equal("company-a-token", rotated.Unprotect(
            await TestData.ScalarAsync<byte[]>(db.DataSource, "SELECT whatsapp_api_key_encrypted FROM company_settings WHERE company_id = $1", source), TestKeys.Slot(source, "whatsapp_api_key_encrypted")));
        var copierSmtp = await TestData.ScalarAsync<byte[]>(db.DataSource, "SELECT smtp_password_encrypted FROM company_settings WHERE company_id = $1", copier);
        Assert.Equal(("test2", "copier-smtp"), (SecretProtector.KeyIdOf(copierSmtp), rotated.Unprotect(copierSmtp, TestKeys.Slot(copier, "smtp_password_encrypted"))));
        Assert.Equal(envelope, await TestData.ScalarAsync<byte[]>(db.DataSource, "SELECT whatsapp_api_key_encrypted FROM company_settings WHERE company_id = $1", copier));
    }
}
