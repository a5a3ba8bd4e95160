import { Logger, Module } from '@nestjs/common';
import { AppConfig } from '@app/config';
import { Appservices } from './appservices';
import { AuthGuard } from './auth.guard';
import { AuthService } from './auth.service';
import { HomeserverTokens } from './homeserver-tokens';
import { StaticTokens } from './static-tokens';

const list = (value: string | undefined): string[] =>
  (value ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

/** Reads MATRIX_TOKENS_FILE and MATRIX_APPSERVICE_FILES as the module will: throws their ConfigError, if any. */
export function checkAuthFiles(config: AppConfig): void {
  if (config.MATRIX_TOKENS_FILE) StaticTokens.fromFile(config.MATRIX_TOKENS_FILE);
  Appservices.fromFiles(list(config.MATRIX_APPSERVICE_FILES), config.MATRIX_SERVER_NAME);
}

@Module({
  providers: [
    {
      provide: StaticTokens,
      inject: [AppConfig],
      useFactory: (config: AppConfig) =>
        config.MATRIX_TOKENS_FILE ? StaticTokens.fromFile(config.MATRIX_TOKENS_FILE) : new StaticTokens([]),
    },
    {
      provide: Appservices,
      inject: [AppConfig],
      useFactory: (config: AppConfig) => {
        const appservices = Appservices.fromFiles(list(config.MATRIX_APPSERVICE_FILES), config.MATRIX_SERVER_NAME);
        for (const warning of appservices.warnings) new Logger(Appservices.name).warn(warning);
        return appservices;
      },
    },
    {
      provide: HomeserverTokens,
      inject: [AppConfig],
      useFactory: (config: AppConfig) =>
        config.MATRIX_HOMESERVER_URL
          ? new HomeserverTokens({
              baseUrl: config.MATRIX_HOMESERVER_URL,
              positiveTtlMs: config.WHOAMI_CACHE_TTL_MS,
              negativeTtlMs: config.WHOAMI_NEGATIVE_CACHE_TTL_MS,
              timeoutMs: config.WHOAMI_TIMEOUT_MS,
              maxConcurrent: config.WHOAMI_MAX_CONCURRENT,
              maxConcurrentPerClient: config.WHOAMI_MAX_CONCURRENT_PER_CLIENT,
            })
          : null,
    },
    {
      provide: AuthService,
      inject: [StaticTokens, Appservices, HomeserverTokens],
      useFactory: (s: StaticTokens, a: Appservices, h: HomeserverTokens | null) => new AuthService(s, a, h),
    },
    AuthGuard,
  ],
  exports: [AuthGuard, AuthService],
})
export class AuthModule {}
